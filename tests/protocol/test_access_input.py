"""The shared access input checks: what the dashboard refuses before it calls, the engine and the CLI
refuse too, in the same words."""

from __future__ import annotations

import time

import pytest

from appliance.access.passwords import verify_password
from appliance.access.tokens import matches, token_id_of
from appliance.cli.access import _expiry
from appliance.config.access_toml import check_identity_name
from appliance.config.units import parse_time
from appliance.control.access import rule_from_edit
from appliance.errors import ConfigError
from appliance.protocol import access as pa
from appliance.protocol import access_input as shared

GROUPS = frozenset({"devs"})


def _engine_refuses_rule(edit: pa.RuleEdit) -> str:
    with pytest.raises(ConfigError) as caught:
        rule_from_edit(edit, GROUPS)
    return str(caught.value)


def _form_refuses_rule(edit: pa.RuleEdit) -> str:
    with pytest.raises(shared.AccessInputError) as caught:
        shared.check_who(edit.who, GROUPS)
        shared.parse_actions(edit.actions)
        shared.parse_effect(edit.effect)
        shared.check_glob(edit.repository)
    return caught.value.message


@pytest.mark.parametrize(
    "edit",
    [
        pa.RuleEdit(who="@nobody", actions=("pull",)),  # no such group
        pa.RuleEdit(who="bad name", actions=("pull",)),
        pa.RuleEdit(who="alice", actions=("pull", "fly")),
        pa.RuleEdit(who="alice", actions=()),
        pa.RuleEdit(who="alice", actions=("pull",), effect="maybe"),
        pa.RuleEdit(who="alice", actions=("pull",), repository="team/[ab]"),
        pa.RuleEdit(who="alice", actions=("pull",), repository="  "),
    ],
    ids=["unknown-group", "bad-name", "bad-action", "no-action", "bad-effect", "bad-glob", "empty-glob"],
)
def test_a_rule_the_dashboard_refuses_the_engine_refuses_with_the_same_reason(edit: pa.RuleEdit) -> None:
    assert _form_refuses_rule(edit) in _engine_refuses_rule(edit)


def test_a_good_rule_passes_both_alike() -> None:
    edit = pa.RuleEdit(who="@devs", actions=("PULL", "push", "pull"), repository="/team/**/")
    rule = rule_from_edit(edit, GROUPS)
    assert shared.parse_actions(edit.actions) == ("pull", "push")
    assert {str(a) for a in rule.actions} == {"pull", "push"}
    assert shared.check_glob(edit.repository) == rule.repository == "team/**"


@pytest.mark.parametrize("name", ["", "anonymous", "has space", "a:b", "-lead", "x" * 129, "@devs"])
def test_identity_names_are_refused_alike_by_the_form_and_the_config_reader(name: str) -> None:
    with pytest.raises(shared.AccessInputError) as form:
        shared.check_identity_name(name, "name")
    with pytest.raises(ConfigError) as engine:
        check_identity_name(name, "access.users[0].name")
    assert form.value.message in str(engine.value)
    assert str(engine.value).startswith("access.users[0].name")


@pytest.mark.parametrize("text", ["soon", "-5d", "1h30", "0", "2001-01-01", "10x"])
def test_token_lifetimes_are_refused_alike_by_the_form_and_the_cli(text: str) -> None:
    now = time.time()
    with pytest.raises(shared.AccessInputError) as form:
        shared.token_expiry(text, now)
    with pytest.raises(ConfigError) as cli:
        _expiry(text, now)
    assert form.value.message in str(cli.value)


def test_token_lifetimes_read_as_the_cli_reads_them() -> None:
    now = 1_800_000_000.0
    assert shared.token_expiry("90d", now) == _expiry("90d", now) == now + 90 * 86400
    assert shared.token_expiry(" never ", now) is None
    assert shared.token_expiry("2030-01-01", now) == _expiry("2030-01-01T00:00:00+00:00", now)


def test_config_times_use_the_same_parser() -> None:
    assert parse_time("1h30m", "x") == shared.parse_duration("1h30m", "x") == 5400.0
    assert parse_time(2.5, "x") == 2.5
    with pytest.raises(ConfigError, match=r"^cache\.inactive: invalid time '1q'"):
        parse_time("1q", "cache.inactive")


def test_passwords_are_checked_without_repeating_them() -> None:
    with pytest.raises(shared.AccessInputError, match="empty"):
        shared.check_password("")
    with pytest.raises(shared.AccessInputError) as differ:
        shared.check_password("canary-one", "canary-two")
    assert "canary" not in str(differ.value)
    assert shared.check_password("pw", "pw") == "pw"


def test_what_the_client_makes_is_what_the_engine_checks() -> None:
    stored = shared.hash_password("correct horse", log_n=10)
    assert verify_password("correct horse", stored) and not verify_password("wrong", stored)
    made = shared.new_token()
    assert token_id_of(made.secret) == made.token_id
    assert matches(made.secret, made.digest)
    assert made.secret not in repr(made)
