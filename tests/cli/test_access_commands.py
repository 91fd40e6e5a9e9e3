"""``appliance user|token|acl``: on the TOML file when no engine runs, through the socket when one
does; and a canary: the password and the token secret appear nowhere but the one-time display."""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import re
from pathlib import Path

import pytest

from appliance.access.verdicts import Outcome
from appliance.cli.main import main
from appliance.config.load import load_config
from tests.fixtures.control_engine import running_engine

PASSWORD = "canary-Pw-9d81e5b7"
TOKEN = re.compile(r"rat_[a-z0-9]{8}_[A-Za-z0-9_-]{43}")
CONFIG = """\
# my appliance, with comments that must survive
listen = "127.0.0.1:3128"  # loopback only
control_socket = "nothing-listens-here.sock"
"""


def run(argv: list[str], monkeypatch: pytest.MonkeyPatch, stdin: str = "") -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    return main(argv)


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("APPLIANCE_CONFIG", raising=False)
    path = tmp_path / "config.toml"
    path.write_text(CONFIG)
    return path


def test_without_an_engine_users_are_edited_in_the_file_with_comments_kept(
    config_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    flags = ["--config", str(config_file)]
    assert (
        run(
            ["user", "add", "alice", "--group", "developers", "--password-stdin", *flags],
            monkeypatch,
            PASSWORD + "\n",
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "user alice added" in out and "no engine running" in out
    text = config_file.read_text()
    assert "# my appliance, with comments that must survive" in text and "# loopback only" in text
    assert config_file.stat().st_mode & 0o777 == 0o600
    access = load_config(None, {"HOME": str(config_file.parent)}, config_file).config.access
    user = access.user("alice")
    assert user is not None and user.password_hash.startswith("$scrypt$ln=15,")
    assert access.groups_of("alice") == frozenset({"developers"})
    old_hash = user.password_hash
    assert run(["user", "passwd", "alice", "--password-stdin", *flags], monkeypatch, "another-pw\n") == 0
    changed = load_config(None, {"HOME": str(config_file.parent)}, config_file).config.access.user("alice")
    assert changed is not None and changed.password_hash != old_hash
    capsys.readouterr()
    assert run(["user", "ls", *flags], monkeypatch) == 0
    assert "alice  groups: developers" in capsys.readouterr().out
    assert run(["user", "rm", "alice", *flags], monkeypatch) == 0
    assert run(["user", "rm", "alice", *flags], monkeypatch) == 2
    assert "no such user" in capsys.readouterr().err


def test_an_empty_password_is_refused(
    config_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    before = config_file.read_bytes()
    assert (
        run(["user", "add", "alice", "--password-stdin", "--config", str(config_file)], monkeypatch, "\n")
        == 2
    )
    assert "empty password" in capsys.readouterr().err
    assert config_file.read_bytes() == before


def test_a_token_is_shown_once_and_stored_only_as_a_digest(
    config_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    flags = ["--config", str(config_file)]
    assert run(["token", "create", "ci", "--expires", "30d", *flags], monkeypatch) == 0
    captured = capsys.readouterr()
    (secret,) = TOKEN.findall(captured.out)
    assert captured.out.strip().endswith(secret)
    assert secret not in captured.err and secret not in config_file.read_text()
    token_id = secret.split("_")[1]
    access = load_config(None, {"HOME": str(config_file.parent)}, config_file).config.access
    record = access.token(token_id)
    assert record is not None and record.name == "ci" and record.expires is not None
    assert run(["token", "ls", *flags], monkeypatch) == 0
    listing = capsys.readouterr().out
    assert token_id in listing and secret not in listing and "sha256" not in listing
    assert run(["token", "rm", token_id, *flags], monkeypatch) == 0
    assert load_config(None, {"HOME": str(config_file.parent)}, config_file).config.access.tokens == ()


def test_acl_rules_in_order_and_check_exit_status(
    config_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    flags = ["--config", str(config_file)]
    assert (
        run(
            ["acl", "add", "*", "pull", "--registry", "docker.io", "--repository", "library/**", *flags],
            monkeypatch,
        )
        == 0
    )
    assert run(["acl", "add", "mallory", "pull", "--deny", "--position", "0", *flags], monkeypatch) == 0
    capsys.readouterr()
    assert run(["acl", "ls", *flags], monkeypatch) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "no match denies" in lines[0]
    assert lines[1].split() == ["0", "deny", "mallory", "pull", "*/**"]
    assert lines[2].split() == ["1", "allow", "*", "pull", "docker.io/library/**"]
    assert run(["acl", "check", "bob", "docker.io", "library/alpine", "pull", *flags], monkeypatch) == 0
    assert "allowed" in capsys.readouterr().out
    assert run(["acl", "check", "mallory", "docker.io", "library/alpine", "pull", *flags], monkeypatch) == 1
    assert "DENIED" in capsys.readouterr().out
    assert run(["acl", "check", "bob", "docker.io", "library/alpine", "push", *flags], monkeypatch) == 1
    assert "no access rule allows it" in capsys.readouterr().out
    assert run(["acl", "add", "@ghosts", "pull", *flags], monkeypatch) == 2
    assert "no group 'ghosts'" in capsys.readouterr().err
    assert run(["acl", "mv", "0", "1", *flags], monkeypatch) == 0  # the deny now comes too late
    assert run(["acl", "check", "mallory", "docker.io", "library/alpine", "pull", *flags], monkeypatch) == 0
    assert run(["acl", "mv", "1", "0", *flags], monkeypatch) == 0
    assert run(["acl", "mv", "0", "7", *flags], monkeypatch) == 2
    assert "position" in capsys.readouterr().err
    assert run(["acl", "rm", "0", *flags], monkeypatch) == 0
    assert run(["acl", "check", "mallory", "docker.io", "library/alpine", "pull", *flags], monkeypatch) == 0


async def test_with_an_engine_running_commands_go_through_the_socket_and_apply_live(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async with running_engine(tmp_path) as running:
        flags = ["--socket", str(running.socket)]
        monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
        assert await asyncio.to_thread(main, ["user", "add", "alice", "--password-stdin", *flags]) == 0
        assert "no engine running" not in capsys.readouterr().out
        header = "Basic " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
        assert (await running.engine.authenticator.check(header)).ok
        assert await asyncio.to_thread(main, ["token", "create", "ci", *flags]) == 0
        (secret,) = TOKEN.findall(capsys.readouterr().out)
        assert (await running.engine.authenticator.check(f"Bearer {secret}")).ok
        assert await asyncio.to_thread(main, ["user", "rm", "alice", *flags]) == 0
        assert (await running.engine.authenticator.check(header)).outcome is Outcome.REJECTED
        assert await asyncio.to_thread(main, ["acl", "add", "ci", "pull", *flags]) == 0
        assert (
            await asyncio.to_thread(main, ["acl", "check", "ci", "lab.example:5000", "x", "pull", *flags])
            == 0
        )
        assert 'who = "ci"' in running.config_path.read_text()
        assert "# a lab registry" in running.config_path.read_text()


async def test_canary_password_and_token_appear_nowhere_but_the_one_time_display(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with running_engine(tmp_path) as running:
        flags = ["--socket", str(running.socket)]
        monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
        assert await asyncio.to_thread(main, ["user", "add", "alice", "--password-stdin", *flags]) == 0
        assert await asyncio.to_thread(main, ["token", "create", "ci", *flags]) == 0
        first = capfd.readouterr()
        (secret,) = TOKEN.findall(first.out)
        auth = running.engine.authenticator
        headers = (
            "Basic " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode(),
            "Basic " + base64.b64encode(f"alice:{PASSWORD}x".encode()).decode(),
            "Basic " + base64.b64encode(f"{PASSWORD}:{PASSWORD}".encode()).decode(),
            f"Bearer {secret}",
            f"Bearer {secret[:-2]}xx",
        )
        for header in headers:
            verdict = await auth.check(header)
            assert PASSWORD not in repr(verdict) + verdict.message()
            assert secret not in repr(verdict) + verdict.message()
        for argv in (
            ["user", "ls"],
            ["token", "ls"],
            ["acl", "ls"],
            ["user", "ls", "--json"],
            ["token", "ls", "--json"],
        ):
            assert await asyncio.to_thread(main, [*argv, *flags]) == 0
        monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
        assert (
            await asyncio.to_thread(main, ["user", "add", "alice", "--password-stdin", *flags]) == 2
        )  # exists
        later = capfd.readouterr()
        seen = {
            "cli output after the display": later.out + later.err + first.err,
            "logs": caplog.text,
            "events": repr(running.engine.events.recent()),
            "config repr": repr(running.engine.config),
            "config file": running.config_path.read_text(),
            "authenticator": repr(vars(auth)),
        }
    assert first.out.count(secret) == 1
    for where, text in seen.items():
        for canary in (PASSWORD, secret, secret[4:], *(h.split(" ", 1)[1] for h in headers)):
            assert canary not in text, where
