"""The access editor's plain parts: forms to edits with the CLI's checks, views to rows without secrets."""

from __future__ import annotations

import pytest

from appliance.access.passwords import verify_password
from appliance.access.tokens import matches
from appliance.protocol import access as pa
from tui.access_model import (
    check_user,
    group_row,
    rule_edit,
    rule_row,
    summary,
    token_edit,
    token_row,
    user_row,
)
from tui.forms_model import FormError

NOW = 1_800_000_000.0


def test_a_user_form_is_checked_like_the_cli_and_hashed_only_when_asked() -> None:
    user = check_user(" alice ", "pw-canary", "pw-canary", "developers, ci")
    assert (user.name, user.groups) == ("alice", ("developers", "ci"))
    assert "pw-canary" not in repr(user)
    edit = user.edit()
    assert verify_password("pw-canary", edit.password_hash) and "pw-canary" not in repr(edit)
    assert check_user("bob", "x", "x", "ignored", new=False).groups == ()


@pytest.mark.parametrize(
    ("name", "password", "again", "groups", "field", "words"),
    [
        ("anonymous", "x", "x", "", "name", "reserved"),
        ("a b", "x", "x", "", "name", "invalid name"),
        ("alice", "", "", "", "password", "empty password"),
        ("alice", "one", "two", "", "password", "the two passwords differ"),
        ("alice", "x", "x", "good, b@d", "groups", "invalid name 'b@d'"),
    ],
)
def test_a_bad_user_form_names_its_field(
    name: str, password: str, again: str, groups: str, field: str, words: str
) -> None:
    with pytest.raises(FormError) as caught:
        check_user(name, password, again, groups)
    assert caught.value.field == field and words in caught.value.message
    assert not password or password not in caught.value.message


def test_a_token_is_made_here_and_only_its_digest_goes_in_the_edit() -> None:
    edit, made = token_edit("ci-runner", "", NOW)  # blank: the CLI's default, 90 days
    assert edit.expires == NOW + 90 * 86400 and edit.created == NOW
    assert edit.id == made.token_id and matches(made.secret, edit.hash)
    assert made.secret not in repr(edit) and made.secret not in repr(made)
    assert token_edit("ci", "never", NOW)[0].expires is None
    with pytest.raises(FormError) as caught:
        token_edit("ci", "soon", NOW)
    assert caught.value.field == "expires"


def test_a_rule_form_reads_as_acl_add_does() -> None:
    edit = rule_edit("@devs", "pull push", "", "/team/**", "deny", " 2 ", {"devs"})
    assert edit == pa.RuleEdit(
        who="@devs", actions=("pull", "push"), registry="*", repository="team/**", effect="deny", position=2
    )
    assert rule_edit("*", "pull", "ghcr.io", "", "", "", ()).position is None
    for args, field in (
        (("@ghosts", "pull", "", "", "allow", ""), "who"),
        (("bob", "fly", "", "", "allow", ""), "actions"),
        (("bob", "pull", "", "a b", "allow", ""), "repository"),
        (("bob", "pull", "", "", "allow", "first"), "position"),
    ):
        with pytest.raises(FormError) as caught:
            rule_edit(*args, {"devs"})
        assert caught.value.field == field


def test_rows_show_names_prefixes_and_dates_never_hashes() -> None:
    token = pa.TokenView(name="ci", id="k3x9q2ab", created=NOW, expires=None, last_used=None)
    row = token_row(token)
    assert row[0] == "rat_k3x9q2ab_…" and row[3] == "never" and row[4] == "not since start"
    assert token_row(pa.TokenView(name="ci", id="k3x9q2ab", expired=True))[3] == "EXPIRED"
    assert user_row(pa.UserView("alice", "config", ("devs",))) == ("alice", "devs", "config file")
    assert group_row(pa.GroupView("devs")) == ("devs", "-")
    rule = pa.RuleView(index=0, who="bob", actions=("pull", "push"), effect="deny")
    assert rule_row(rule) == ("0", "deny", "bob", "pull,push", "*", "**")
    assert "OFF" in summary(pa.AccessView(enabled=False, allow_clients=("10.0.0.0/8",)))
