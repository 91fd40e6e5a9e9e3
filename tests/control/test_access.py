"""The access endpoints on a real control socket: edits land in the file (comments kept) and take
effect in the running engine at once, a bad edit leaves the file byte-identical, no hash or secret
is ever answered."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from appliance import protocol as p
from appliance.access.passwords import hash_password
from appliance.access.tokens import new_token
from appliance.access.verdicts import Outcome
from appliance.control.client import ControlError
from appliance.protocol import access as pa
from appliance.protocol.endpoints import ACCESS, ACCESS_ACL, ACCESS_CHECK, ACCESS_TOKENS, ACCESS_USERS
from tests.fixtures.control_engine import Running, running_engine

PASSWORD = "canary-control-7Q2x"


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    async with running_engine(tmp_path) as engine:
        yield engine


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def view(running: Running) -> pa.AccessView:
    return await running.client._call("GET", ACCESS, pa.AccessView)


async def test_a_user_added_and_removed_through_the_socket_is_live_at_once(running: Running) -> None:
    edit = pa.UserEdit(name="alice", password_hash=hash_password(PASSWORD, log_n=10), groups=("developers",))
    change = await running.client._call("POST", ACCESS_USERS, p.ConfigChange, edit)
    assert change.applied
    text = running.config_path.read_text()
    assert "# The appliance under test.  This comment must survive every edit." in text
    assert "# a lab registry" in text and 'name = "alice"' in text
    assert running.config_path.stat().st_mode & 0o777 == 0o600
    shown = await view(running)
    assert [(u.name, u.groups) for u in shown.users] == [("alice", ("developers",))]
    assert "scrypt" not in shown.dumps()
    auth = running.engine.authenticator
    assert (await auth.check(basic("alice", PASSWORD))).ok
    await running.client._call("DELETE", f"{ACCESS_USERS}/alice", p.ConfigChange)
    # The cached verdict went with the user.
    assert (await auth.check(basic("alice", PASSWORD))).outcome is Outcome.REJECTED
    assert 'name = "alice"' not in running.config_path.read_text()


async def test_a_new_password_replaces_the_old_one_live(running: Running) -> None:
    first = pa.UserEdit(name="bob", password_hash=hash_password("old-pw", log_n=10))
    await running.client._call("POST", ACCESS_USERS, p.ConfigChange, first)
    auth = running.engine.authenticator
    assert (await auth.check(basic("bob", "old-pw"))).ok
    second = pa.UserEdit(name="bob", password_hash=hash_password("new-pw", log_n=10))
    await running.client._call("PATCH", f"{ACCESS_USERS}/bob", p.ConfigChange, second)
    assert (await auth.check(basic("bob", "old-pw"))).outcome is Outcome.REJECTED
    assert (await auth.check(basic("bob", "new-pw"))).ok


async def test_tokens_are_listed_without_hashes_used_and_revoked(running: Running) -> None:
    made = new_token()
    edit = pa.TokenEdit(name="ci", id=made.token_id, hash=made.digest, created=time.time(), expires=None)
    await running.client._call("POST", ACCESS_TOKENS, p.ConfigChange, edit)
    auth = running.engine.authenticator
    assert (await auth.check(f"Bearer {made.secret}")).ok
    shown = await view(running)
    (token,) = shown.tokens
    assert (token.name, token.id, token.expired) == ("ci", made.token_id, False)
    assert token.last_used is not None
    assert made.digest not in shown.dumps() and made.secret not in shown.dumps()
    await running.client._call("DELETE", f"{ACCESS_TOKENS}/{made.token_id}", p.ConfigChange)
    assert (await auth.check(f"Bearer {made.secret}")).outcome is Outcome.REJECTED


async def test_rules_are_added_in_place_removed_and_checked(running: Running) -> None:
    call = running.client._call
    await call(
        "POST", ACCESS_ACL, p.ConfigChange, pa.RuleEdit(who="*", actions=("pull",), registry="docker.io")
    )
    await call(
        "POST",
        ACCESS_ACL,
        p.ConfigChange,
        pa.RuleEdit(who="bob", actions=("pull",), effect="deny", position=0),
    )
    shown = await view(running)
    assert [(r.index, r.who, r.effect, r.registry) for r in shown.acl] == [
        (0, "bob", "deny", "*"),
        (1, "*", "allow", "docker.io"),
    ]
    check = pa.AccessCheck(identity="bob", registry="docker.io", repository="library/alpine", action="pull")
    decision = await call("POST", ACCESS_CHECK, pa.AccessDecision, check)
    assert (decision.allowed, decision.rule) == (False, 0)
    other = pa.AccessCheck(identity="carol", registry="docker.io", repository="library/alpine", action="pull")
    assert (await call("POST", ACCESS_CHECK, pa.AccessDecision, other)).allowed
    await call("DELETE", f"{ACCESS_ACL}/0", p.ConfigChange)
    assert (await call("POST", ACCESS_CHECK, pa.AccessDecision, check)).allowed


@pytest.mark.parametrize(
    ("path", "body", "where"),
    [
        (ACCESS_USERS, pa.UserEdit(name="eve", password_hash="hunter2-in-clear"), "password_hash"),
        (ACCESS_USERS, pa.UserEdit(name="bad:name", password_hash=hash_password("x", log_n=10)), "name"),
        (ACCESS_ACL, pa.RuleEdit(who="@nogroup", actions=("pull",)), "who"),
        (ACCESS_ACL, pa.RuleEdit(who="a", actions=("read",)), "actions"),
        (ACCESS_TOKENS, pa.TokenEdit(name="ci", id="short", hash="sha256:00", created=0.0), "id"),
    ],
)
async def test_bad_edits_are_refused_naming_the_field_and_the_file_is_untouched(
    running: Running, path: str, body: p.Payload, where: str
) -> None:
    before = running.config_path.read_bytes()
    with pytest.raises(ControlError) as caught:
        await running.client._call("POST", path, p.ConfigChange, body)
    assert caught.value.status == 422
    assert where in str(caught.value)
    assert "hunter2-in-clear" not in str(caught.value)
    assert running.config_path.read_bytes() == before


async def test_removing_what_does_not_exist_is_an_error(running: Running) -> None:
    for path in (f"{ACCESS_USERS}/nobody", f"{ACCESS_TOKENS}/abcd1234", f"{ACCESS_ACL}/3"):
        with pytest.raises(ControlError) as caught:
            await running.client._call("DELETE", path, p.ConfigChange)
        assert "no such" in str(caught.value)


async def test_a_rule_moved_through_the_socket_decides_from_its_new_place(running: Running) -> None:
    client = running.client
    await client.add_rule(pa.RuleEdit(who="*", actions=("pull",)))
    await client.add_rule(pa.RuleEdit(who="bob", actions=("pull",), effect="deny"))
    bob = pa.AccessCheck(identity="bob", registry="docker.io", repository="library/alpine", action="pull")
    assert (await client.check_access(bob)).allowed  # "*" matches first
    change = await client.move_rule(1, 0)
    assert change.applied and "moved" in change.message
    shown = await client.access()
    assert [(r.index, r.who) for r in shown.acl] == [(0, "bob"), (1, "*")]
    decision = await client.check_access(bob)
    assert (decision.allowed, decision.rule) == (False, 0)
    before = running.config_path.read_bytes()
    for index, position in ((5, 0), (0, 2)):
        with pytest.raises(ControlError) as caught:
            await client.move_rule(index, position)
        assert caught.value.status == 422 and (
            "no such rule" in str(caught.value) or "position" in str(caught.value)
        )
    assert running.config_path.read_bytes() == before
