"""Edits of ``[access]`` keep the file's comments and layout; rendering round-trips."""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from pathlib import Path

import pytest
import tomlkit

from appliance.access.passwords import hash_password
from appliance.access.tokens import new_token
from appliance.config import access_edit, toml_edit
from appliance.config.access import (
    UNLIMITED,
    AccessConfig,
    AclRule,
    Action,
    ClientMapping,
    Effect,
    Group,
    IdentityLimit,
    RateLimit,
    RobotToken,
    User,
)
from appliance.config.toml_read import config_from_document
from appliance.config.toml_render import render_config
from appliance.config.values import default_config
from appliance.errors import ConfigError

ENV = {"HOME": "/nonexistent"}
HASH = hash_password("pw", log_n=10)
TEXT = """\
# top comment
listen = "127.0.0.1:3128"

[access]
# access is on: keep this comment
enabled = true

[[access.acl]]
# the first rule
who = "*"
actions = ["pull"]
"""


def edited(tmp_path: Path, change: access_edit.DocumentChange, text: str = TEXT) -> tuple[str, AccessConfig]:
    path = tmp_path / "config.toml"
    path.write_text(text)
    config = toml_edit.edit_document(path, change, ENV)
    return path.read_text(), config.access


def test_adding_a_rule_before_the_first_keeps_every_comment(tmp_path: Path) -> None:
    rule = AclRule("bob", frozenset({Action.PULL}), effect=Effect.DENY)
    text, access = edited(tmp_path, lambda doc: access_edit.add_rule(doc, rule, 0))
    for comment in ("# top comment", "# access is on: keep this comment", "# the first rule"):
        assert comment in text
    assert [r.who for r in access.acl] == ["bob", "*"]
    assert access.acl[0].effect is Effect.DENY and access.enabled


def test_moving_a_rule_reorders_the_file_and_keeps_the_comment_inside_it(tmp_path: Path) -> None:
    bob = AclRule("bob", frozenset({Action.PULL}), effect=Effect.DENY)

    def change(doc: tomlkit.TOMLDocument) -> None:
        access_edit.add_rule(doc, bob, None)
        access_edit.move_rule(doc, 1, 0)

    text, access = edited(tmp_path, change)
    assert [r.who for r in access.acl] == ["bob", "*"]
    assert "# the first rule" in text and "# access is on: keep this comment" in text
    with pytest.raises(ConfigError, match="position"):
        edited(tmp_path, lambda doc: access_edit.move_rule(doc, 0, 1))
    with pytest.raises(ConfigError, match="no such rule"):
        edited(tmp_path, lambda doc: access_edit.move_rule(doc, 3, 0))


def test_a_user_joins_existing_and_new_groups_and_leaves_them_when_removed(tmp_path: Path) -> None:
    base = TEXT + '\n[[access.groups]]\nname = "ops"  # the on-call people\nmembers = ["carol"]\n'
    text, access = edited(
        tmp_path, lambda doc: access_edit.add_user(doc, "dave", HASH, ("ops", "devs")), base
    )
    assert "# the on-call people" in text
    assert access.groups_of("dave") == frozenset({"ops", "devs"})
    path = tmp_path / "config.toml"
    access = toml_edit.edit_document(path, lambda doc: access_edit.remove_user(doc, "dave"), ENV).access
    assert access.user("dave") is None and access.groups_of("dave") == frozenset()
    assert access.groups_of("carol") == frozenset({"ops"})


def test_a_rejected_edit_leaves_the_file_byte_identical(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(TEXT)
    before = path.read_bytes()
    with pytest.raises(ConfigError):
        toml_edit.edit_document(path, lambda doc: access_edit.add_user(doc, "x", "not-a-hash", ()), ENV)
    with pytest.raises(ConfigError):
        toml_edit.edit_document(path, lambda doc: access_edit.remove_rule(doc, 5), ENV)
    assert path.read_bytes() == before


def test_rendering_round_trips_the_access_configuration() -> None:
    made = new_token()
    defaults = default_config(ENV)
    access = AccessConfig(
        enabled=True,
        users=(User("alice", HASH),),
        groups=(Group("developers", ("alice", "ci")),),
        tokens=(RobotToken("ci", made.token_id, made.digest, created=1796119200.0, expires=1798761600.0),),
        clients=(ClientMapping(ipaddress.ip_network("10.42.0.0/16"), "k8s-nodes"),),
        acl=(
            AclRule(
                "@developers", frozenset({Action.PULL, Action.PUSH}), registry="ghcr.io", repository="org/**"
            ),
            AclRule("k8s-nodes", frozenset({Action.PULL}), effect=Effect.DENY),
        ),
        limit=RateLimit(requests_per_minute=600, bytes_per_second=50 * 1024**2),
        limits=(
            IdentityLimit("@developers", RateLimit(requests_per_minute=6000)),
            IdentityLimit("k8s-nodes", RateLimit(bytes_per_second=UNLIMITED)),
        ),
    )
    config = replace(defaults, access=access, allow_clients=(ipaddress.ip_network("10.0.0.0/8"),))
    text = tomlkit.dumps(render_config(config, defaults))
    back = config_from_document(tomlkit.parse(text), defaults, ENV).config
    assert back.access == access
    assert back.allow_clients == config.allow_clients
    plain = tomlkit.dumps(render_config(defaults, defaults))
    assert "# allow_clients = " in plain and "[access]" not in plain.replace("# [access]", "")
