"""The registries and credentials editor against a real engine: saves land in the TOML file through the
control socket with comments kept, refusals show inline and write nothing, and no secret is ever drawn."""

from __future__ import annotations

import asyncio
import tomllib

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, Static

from tests.fixtures.appliance import Appliance
from tests.tui.conftest import EXTRA_COMMENT, make_app, screen_text, svg_text, wait_for
from tui.app import DashboardApp
from tui.screens.forms import CredentialForm, RegistryForm
from tui.screens.registries import RegistriesScreen

pytestmark = pytest.mark.e2e


async def _type(pilot: Pilot[None], app: DashboardApp, selector: str, text: str) -> None:
    field = app.screen.query_one(selector, Input)
    field.focus()
    await pilot.pause()
    field.value = ""
    await pilot.press(*text)


async def _open_registry_form(pilot: Pilot[None], app: DashboardApp) -> None:
    await wait_for(pilot, lambda: app.state.connected, "connected")
    await pilot.press("r")
    await wait_for(pilot, lambda: isinstance(app.screen, RegistriesScreen), "the editor")
    await pilot.press("a")
    await wait_for(pilot, lambda: isinstance(app.screen, RegistryForm), "the registry form")


async def test_adding_a_registry_in_the_form_lands_in_the_toml_file_with_its_comments(
    engine: Appliance,
) -> None:
    before = engine.config_path.read_text()
    app = make_app(engine.control_socket)
    async with app.run_test(size=(160, 48)) as pilot:
        await _open_registry_form(pilot, app)
        await _type(pilot, app, "#host", "mirror.example.test:5000")
        await _type(pilot, app, "#aliases", "mirror, mirror.local")
        await _type(pilot, app, "#tag_ttl", "90m")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, RegistriesScreen), "the form to close")
        # The editor shows the engine's new configuration.
        await wait_for(
            pilot,
            lambda: (
                app.state.config is not None
                and any(r.host == "mirror.example.test:5000" for r in app.state.config.registries)
            ),
            "the new registry in the engine's config",
        )
        await pilot.pause(0.2)
        assert "mirror.example.test:5000" in screen_text(app)

    after = engine.config_path.read_text()
    assert EXTRA_COMMENT in after and "# written by the test fixture" in after
    assert after.startswith(before.rstrip("\n")[:200])  # what was there stays as it was, in order
    added = [r for r in tomllib.loads(after)["registries"] if r["host"] == "mirror.example.test:5000"]
    assert added == [
        {"host": "mirror.example.test:5000", "aliases": ["mirror", "mirror.local"], "tag_ttl": "90m"}
    ]


async def test_a_wrong_host_shows_an_inline_error_and_leaves_the_file_byte_identical(
    engine: Appliance,
) -> None:
    before = engine.config_path.read_bytes()
    app = make_app(engine.control_socket)
    async with app.run_test(size=(80, 24)) as pilot:
        await _open_registry_form(pilot, app)
        await _type(pilot, app, "#host", "not a host!")
        await pilot.press("ctrl+s")
        error = app.screen.query_one("#error-host", Static)
        await wait_for(pilot, lambda: error.has_class("-shown"), "an error under the host field")
        assert isinstance(app.screen, RegistryForm)  # still open, to fix the input
        message = str(error.render())
        assert "invalid host 'not a host!'" in message  # the engine's reason, under the field at fault
        assert "✗" in screen_text(app)
    assert engine.config_path.read_bytes() == before


SECRET = "Sekr1t-Passw0rd-4-tui-test"


async def test_no_screen_ever_shows_a_typed_password(engine: Appliance) -> None:
    app = make_app(engine.control_socket)
    seen: list[str] = []

    def look() -> None:
        for text in (screen_text(app), svg_text(app)):
            assert SECRET not in text, f"the password is on {type(app.screen).__name__}"
            # Not even a recognisable piece of it.
            assert SECRET[:8] not in text and SECRET[-8:] not in text
        seen.append(type(app.screen).__name__)

    async with app.run_test(size=(160, 48)) as pilot:
        await wait_for(pilot, lambda: app.state.connected, "connected")
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, RegistriesScreen), "the editor")
        await pilot.press("k")
        await wait_for(pilot, lambda: isinstance(app.screen, CredentialForm), "the credential form")
        await _type(pilot, app, "#scope", "secret.example.test/team")
        await _type(pilot, app, "#username", "robot")
        await _type(pilot, app, "#password", SECRET)
        assert app.screen.query_one("#password", Input).value == SECRET  # it was typed...
        look()  # ...and is drawn masked
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, RegistriesScreen), "the form to close")
        await wait_for(
            pilot,
            lambda: (
                app.state.config is not None
                and any(c.scope == "secret.example.test/team" for c in app.state.config.credentials)
            ),
            "the credential in the engine's config",
        )
        await pilot.pause(0.3)
        look()
        # Every other screen, including the palette, help and dialogs.
        for keys, wanted in (
            (["escape"], "DashboardScreen"),
            (["e"], "EnvScreen"),
            (["escape", "c"], "CacheScreen"),
            (["escape", "question_mark"], "HelpScreen"),
            (["escape", "r"], "RegistriesScreen"),
            (["tab", "d"], "ConfirmScreen"),
            (["n", "k"], "CredentialForm"),
            (["escape", "ctrl+p"], "CommandPalette"),
        ):
            await pilot.press(*keys)
            await wait_for(pilot, lambda wanted=wanted: type(app.screen).__name__ == wanted, wanted)  # type: ignore[misc]
            await pilot.pause(0.4)
            look()
        await pilot.press("escape")
        await asyncio.to_thread(engine.stop)
        await wait_for(pilot, lambda: type(app.screen).__name__ == "DisconnectedScreen", "disconnected")
        look()
    assert set(seen) >= {
        "CredentialForm",
        "RegistriesScreen",
        "DashboardScreen",
        "EnvScreen",
        "CacheScreen",
        "HelpScreen",
        "ConfirmScreen",
        "CommandPalette",
        "DisconnectedScreen",
    }
    # The secret did reach the engine's file, so the test typed a real, saved password.
    assert SECRET in engine.config_path.read_text()
