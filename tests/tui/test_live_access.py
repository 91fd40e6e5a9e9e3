"""The access editor against a real engine: users, tokens and ACL rules edited through the control
socket land in the TOML file and apply at once; refusals show under the field with the CLI's words;
a typed password is on no screen, in no log, in no event and only hashed in the file; a token's secret
is shown once and stored only as its digest."""

from __future__ import annotations

import asyncio
import hashlib
import re
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Static

from appliance.access.passwords import verify_password
from appliance.control.client import ControlClient
from appliance.protocol import access as pa
from appliance.protocol import access_input as shared
from tests.fixtures.appliance import Appliance
from tests.fixtures.clients import skopeo_copy
from tests.fixtures.images import ImageInfo, ImagePusher
from tests.fixtures.registry import UpstreamRegistry
from tests.tui.conftest import EXTRA_COMMENT, make_app, screen_text, svg_text, wait_for
from tui.app import DashboardApp
from tui.screens.access import AccessScreen
from tui.screens.access_forms import RuleForm, TokenForm, TokenShown, UserForm
from tui.screens.confirm import ConfirmScreen

pytestmark = pytest.mark.e2e

CANARY = "Canary-Pw-9x7Q-access-tui"


async def _type(pilot: Pilot[None], app: DashboardApp, selector: str, text: str) -> None:
    field = app.screen.query_one(selector, Input)
    field.focus()
    await pilot.pause()
    field.value = ""
    await pilot.press(*text)


async def _open_access(pilot: Pilot[None], app: DashboardApp) -> AccessScreen:
    await wait_for(pilot, lambda: app.state.connected, "connected")
    await pilot.press("a")
    await wait_for(pilot, lambda: isinstance(app.screen, AccessScreen), "the access editor")
    screen = app.screen
    assert isinstance(screen, AccessScreen)
    await wait_for(pilot, lambda: screen.view is not None, "the engine's access view")
    return screen


def _access(engine: Appliance) -> dict[str, Any]:
    access = tomllib.loads(engine.config_path.read_text()).get("access", {})
    assert isinstance(access, dict)
    return access


class EventTap:
    """Every frame of the engine's event stream, as the text that crossed the socket."""

    def __init__(self) -> None:
        self.frames: list[str] = []


async def _tap(engine: Appliance, tap: EventTap) -> None:
    async with ControlClient(engine.control_socket) as client:
        stream = await client.events(replay=1000)
        async for batch in stream:
            tap.frames.extend(event.dumps() for event in batch.events)


@pytest.fixture
async def tap(engine: Appliance) -> AsyncIterator[EventTap]:
    found = EventTap()
    task = asyncio.create_task(_tap(engine, found))
    yield found
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def _pull_as(
    engine: Appliance, registry: UpstreamRegistry, image: ImageInfo, dest: Path, user: str, password: str
) -> None:
    """A real pull through the proxy with ``user:password`` in the proxy URL (sent on every CONNECT)."""
    proxy = engine.url.replace("://", f"://{user}:{password}@", 1)
    skopeo_copy(
        f"docker://{image.reference(registry.name_port)}",
        f"dir:{dest}",
        https_proxy=proxy,
        cert_dir=engine.cert_dir(),
    ).check()


async def test_a_user_added_in_the_form_is_hashed_and_the_password_appears_nowhere(
    tmp_path: Path,
    engine: Appliance,
    tap: EventTap,
    open_registry: UpstreamRegistry,
    push_test_image: ImagePusher,
) -> None:
    image = push_test_image(open_registry, layer_sizes=(20_000,))
    app = make_app(engine.control_socket)

    def look() -> None:
        for text in (screen_text(app), svg_text(app)):
            assert CANARY not in text and CANARY[:8] not in text and CANARY[-8:] not in text

    async with app.run_test(size=(160, 48)) as pilot:
        screen = await _open_access(pilot, app)
        await pilot.press("u")
        await wait_for(pilot, lambda: isinstance(app.screen, UserForm), "the user form")
        await _type(pilot, app, "#name", "alice")
        await _type(pilot, app, "#password", CANARY)
        await _type(pilot, app, "#again", CANARY + "x")
        look()
        await pilot.press("ctrl+s")
        error = app.screen.query_one("#error-again", Static)
        await wait_for(
            pilot,
            lambda: (
                error.has_class("-shown")
                or app.screen.query_one("#error-password", Static).has_class("-shown")
            ),
            "the mismatch shown",
        )
        assert "the two passwords differ" in screen_text(app)  # the CLI's words
        look()
        await _type(pilot, app, "#again", CANARY)
        await _type(pilot, app, "#groups", "developers, ci")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, AccessScreen), "the form to close", within=30)
        await wait_for(
            pilot,
            lambda: screen.view is not None and [u.name for u in screen.view.users] == ["alice"],
            "alice in the engine's view",
        )
        await pilot.pause(0.3)
        text = screen_text(app)
        assert "alice" in text and "developers" in text and "$scrypt$" not in text
        look()
        # Every other screen the dashboard has, with the palette and help.
        for keys, wanted in (
            (["escape"], "DashboardScreen"),
            (["a", "question_mark"], "HelpScreen"),
            (["escape", "u"], "UserForm"),
            (["escape", "ctrl+p"], "CommandPalette"),
        ):
            await pilot.press(*keys)
            await wait_for(pilot, lambda wanted=wanted: type(app.screen).__name__ == wanted, wanted)  # type: ignore[misc]
            await pilot.pause(0.3)
            look()
        await pilot.press("escape")
        # The new user pulls, the canary on every CONNECT: the requests reach the event stream
        # (and the dashboard's rows), the canary does not.
        await asyncio.to_thread(_pull_as, engine, open_registry, image, tmp_path / "pulled", "alice", CANARY)
        await wait_for(pilot, lambda: len(tap.frames) >= len(image.blob_digests), "the pull's events")
        await pilot.pause(0.3)
        look()

    access = _access(engine)
    users = access["users"]
    assert isinstance(users, list) and [u["name"] for u in users] == ["alice"]
    stored = users[0]["password_hash"]
    assert stored.startswith("$scrypt$") and verify_password(CANARY, stored)  # the password typed, hashed
    text = engine.config_path.read_text()
    assert CANARY not in text and EXTRA_COMMENT in text
    assert {g["name"]: g["members"] for g in access["groups"]} == {"developers": ["alice"], "ci": ["alice"]}
    assert CANARY not in engine.log_text()
    assert tap.frames and not any(CANARY in frame or CANARY[:8] in frame for frame in tap.frames)


async def test_a_token_secret_is_shown_once_stored_as_its_digest_and_revoked(engine: Appliance) -> None:
    app = make_app(engine.control_socket)
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await _open_access(pilot, app)
        await pilot.press("t")
        await wait_for(pilot, lambda: isinstance(app.screen, TokenForm), "the token form")
        await _type(pilot, app, "#name", "ci-runner")
        await _type(pilot, app, "#expires", "yesterday")
        await pilot.press("ctrl+s")
        error = app.screen.query_one("#error-expires", Static)
        await wait_for(pilot, lambda: error.has_class("-shown"), "the lifetime refused")
        assert "invalid time 'yesterday'" in str(error.render())
        await _type(pilot, app, "#expires", "30d")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, TokenShown), "the one-time secret")
        await pilot.pause(0.2)
        shown = re.search(r"rat_[a-z0-9]{8}_[A-Za-z0-9_-]{43}", screen_text(app))
        assert shown is not None
        secret = shown.group(0)
        assert "cannot be shown again" in screen_text(app)
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, AccessScreen), "back to the editor")
        await wait_for(
            pilot, lambda: screen.view is not None and len(screen.view.tokens) == 1, "the token listed"
        )
        await pilot.pause(0.3)
        token = screen.view.tokens[0]  # type: ignore[union-attr]
        text = screen_text(app) + svg_text(app)
        assert f"rat_{token.id}_…" in text and "ci-runner" in text
        assert secret not in text and secret[-20:] not in text and "sha256:" not in text
        # Gone for good: no way back to it.
        assert not any(isinstance(s, TokenShown) for s in app.screen_stack)

        [stored] = _access(engine)["tokens"]
        assert stored["id"] == token.id and secret.startswith(f"rat_{token.id}_")
        assert stored["hash"] == "sha256:" + hashlib.sha256(secret.encode()).hexdigest()
        assert secret not in engine.config_path.read_text()

        # Revoke it: focus the tokens table, remove, confirm.
        app.screen.query_one("#tokens", DataTable).focus()
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")
        await pilot.press("y")
        await wait_for(pilot, lambda: screen.view is not None and not screen.view.tokens, "the token revoked")
    assert "tokens" not in _access(engine)
    assert secret not in engine.log_text()


async def test_rules_are_added_moved_and_removed_and_bad_ones_refused_in_the_clis_words(
    engine: Appliance,
) -> None:
    app = make_app(engine.control_socket)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _open_access(pilot, app)

        async def add_rule(who: str, actions: str, *, deny: bool = False) -> None:
            await pilot.press("n")
            await wait_for(pilot, lambda: isinstance(app.screen, RuleForm), "the rule form")
            await _type(pilot, app, "#who", who)
            await _type(pilot, app, "#actions", actions)
            if deny:
                form = app.screen
                assert isinstance(form, RuleForm)
                form.query_one("#effect").value = "deny"  # type: ignore[attr-defined]
            await pilot.press("ctrl+s")

        await add_rule("*", "pull")
        await wait_for(pilot, lambda: screen.view is not None and len(screen.view.acl) == 1, "rule 0")
        await add_rule("bob", "pull", deny=True)
        await wait_for(pilot, lambda: screen.view is not None and len(screen.view.acl) == 2, "rule 1")
        assert [(r.who, r.effect) for r in screen.view.acl] == [("*", "allow"), ("bob", "deny")]  # type: ignore[union-attr]

        bob = pa.AccessCheck(identity="bob", registry="docker.io", repository="library/alpine", action="pull")
        async with ControlClient(engine.control_socket) as client:
            assert (await client.check_access(bob)).allowed  # "*" comes first

            # Move bob's deny up: select rule 1 and press "[".
            rules = app.screen.query_one("#rules", DataTable)
            rules.focus()
            rules.move_cursor(row=1)
            await pilot.press("left_square_bracket")
            await wait_for(
                pilot,
                lambda: screen.view is not None and [r.who for r in screen.view.acl] == ["bob", "*"],
                "bob's rule first",
            )
            decision = await client.check_access(bob)
            assert (decision.allowed, decision.rule) == (False, 0)

        # Refusals: an unknown group (checked by the form, as the CLI's engine call would), and a
        # registry the engine cannot parse (the engine's refusal, under the field).
        before = engine.config_path.read_bytes()
        await add_rule("@ghosts", "pull")
        error = app.screen.query_one("#error-who", Static)
        await wait_for(pilot, lambda: error.has_class("-shown"), "the unknown group refused")
        assert "no group 'ghosts' in access.groups" in str(error.render())
        await _type(pilot, app, "#who", "carol")
        await _type(pilot, app, "#registry", "not a host!")
        await pilot.press("ctrl+s")
        error = app.screen.query_one("#error-registry", Static)
        await wait_for(pilot, lambda: error.has_class("-shown"), "the bad registry refused by the engine")
        assert "invalid host 'not a host!'" in str(error.render())
        await _type(pilot, app, "#actions", "pull, fly")
        await pilot.press("ctrl+s")
        await wait_for(
            pilot, lambda: app.screen.query_one("#error-actions", Static).has_class("-shown"), "bad action"
        )
        assert "unknown action 'fly'" in screen_text(app)
        assert engine.config_path.read_bytes() == before
        await pilot.press("escape")

        # Remove rule 0 (bob's deny).
        await wait_for(pilot, lambda: isinstance(app.screen, AccessScreen), "back")
        rules = app.screen.query_one("#rules", DataTable)
        rules.focus()
        rules.move_cursor(row=0)
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")
        await pilot.press("y")
        await wait_for(
            pilot,
            lambda: screen.view is not None and [r.who for r in screen.view.acl] == ["*"],
            "rule removed",
        )
    assert [r["who"] for r in _access(engine)["acl"]] == ["*"]
    assert shared.ANYONE == "*"


async def test_a_password_is_changed_and_a_user_removed_from_the_editor(engine: Appliance) -> None:
    async with ControlClient(engine.control_socket) as client:
        first = pa.UserEdit("carol", shared.hash_password("first-pw", log_n=10), ("ops",))
        assert (await client.add_user(first)).applied
    app = make_app(engine.control_socket)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _open_access(pilot, app)
        await wait_for(pilot, lambda: screen.view is not None and len(screen.view.users) == 1, "carol listed")
        app.screen.query_one("#users", DataTable).focus()
        await pilot.press("p")
        await wait_for(pilot, lambda: isinstance(app.screen, UserForm), "the password form")
        assert app.screen.query_one("#name", Input).disabled  # a password change never renames
        await _type(pilot, app, "#password", CANARY)
        await _type(pilot, app, "#again", CANARY)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, AccessScreen), "the form to close", within=30)
        stored = _access(engine)["users"][0]["password_hash"]
        assert verify_password(CANARY, stored) and not verify_password("first-pw", stored)
        assert CANARY not in screen_text(app)

        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")
        assert "Remove the user carol?" in screen_text(app)
        await pilot.press("y")
        await wait_for(pilot, lambda: screen.view is not None and not screen.view.users, "carol removed")
    access = _access(engine)
    assert "users" not in access
    assert CANARY not in engine.config_path.read_text() and CANARY not in engine.log_text()
