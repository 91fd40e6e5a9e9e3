"""``allow_clients`` and ``[access]`` in the TOML file and ALLOW_CLIENTS in the environment."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import bcrypt
import pytest

from appliance.access.passwords import hash_password
from appliance.access.tokens import new_token
from appliance.config.access import UNLIMITED, Action, Effect, IdentityLimit, RateLimit
from appliance.config.load import load_config
from appliance.config.seed_env_export import export_env
from appliance.errors import ConfigError

HASH = hash_password("pw", log_n=10)


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    path = tmp_path / "config.toml"
    path.write_text(text)
    return load_config(None, {"HOME": str(tmp_path), **(env or {})}, path).config


def test_allow_clients_from_the_file_and_the_env_var(tmp_path: Path) -> None:
    config = load(tmp_path, 'allow_clients = ["10.0.0.0/8", "2001:db8::/32", "203.0.113.7"]\n')
    assert config.allow_clients == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("2001:db8::/32"),
        ipaddress.ip_network("203.0.113.7/32"),
    )
    from_env = load(tmp_path, "", {"ALLOW_CLIENTS": "192.168.0.0/16, 127.0.0.1"})
    assert from_env.allow_clients == (
        ipaddress.ip_network("192.168.0.0/16"),
        ipaddress.ip_network("127.0.0.1/32"),
    )
    assert ("ALLOW_CLIENTS", "192.168.0.0/16,127.0.0.1/32") in export_env(from_env)[0]
    assert load(tmp_path, "").allow_clients is None


@pytest.mark.parametrize(
    ("text", "env", "where"),
    [
        ('allow_clients = ["10.0.0.0/33"]\n', {}, "allow_clients"),
        ("allow_clients = []\n", {}, "allow_clients"),
        ('allow_clients = "10.0.0.0/8"\n', {}, "allow_clients"),
        ("", {"ALLOW_CLIENTS": "10.0.0.0/8,nonsense"}, "ALLOW_CLIENTS"),
    ],
)
def test_bad_allow_clients_name_the_key(tmp_path: Path, text: str, env: dict[str, str], where: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text, env)
    assert where in caught.value.where


def test_a_full_access_section(tmp_path: Path) -> None:
    token = new_token()
    config = load(
        tmp_path,
        f"""
[access]
enabled = true
verdict_ttl = "30s"

[[access.users]]
name = "alice"
password_hash = "{HASH}"

[[access.groups]]
name = "developers"
members = ["alice", "ci"]

[[access.tokens]]
name = "ci"
id = "{token.token_id}"
hash = "{token.digest}"
created = 2026-12-01T10:00:00Z
expires = 2027-01-01

[[access.clients]]
cidr = "10.42.0.0/16"
identity = "k8s-nodes"

[[access.acl]]
who = "@developers"
registry = "docker.io"
repository = "myorg/**"
actions = ["pull", "push"]

[[access.acl]]
who = "*"
actions = ["pull"]
effect = "deny"
""",
    )
    access = config.access
    assert access.enabled and access.verdict_ttl == 30.0
    assert access.user("alice") is not None and access.users[0].password_hash == HASH
    assert access.groups_of("ci") == frozenset({"developers"})
    record = access.token(token.token_id)
    assert record is not None and record.name == "ci" and record.digest == token.digest
    assert record.created == 1796119200.0 and record.expires == 1798761600.0
    assert access.clients[0].identity == "k8s-nodes"
    assert access.acl[0].actions == frozenset({Action.PULL, Action.PUSH})
    assert access.acl[0].registry == "docker.io" and access.acl[0].repository == "myorg/**"
    assert access.acl[1].effect is Effect.DENY and access.acl[1].registry == "*"
    assert "[access] (users, tokens, ACL rules) has no env var equivalent" in export_env(config)[1]


def test_password_file_holds_a_hash_or_an_htpasswd_line(tmp_path: Path) -> None:
    bare = tmp_path / "alice.hash"
    bare.write_text(HASH + "\n")
    made = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode().replace("$2b$", "$2y$", 1)
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text(f"# users\nbob:{made}\ncarol:{made}\n")
    config = load(
        tmp_path,
        """
[access]
htpasswd_file = "htpasswd"
[[access.users]]
name = "alice"
password_file = "alice.hash"
""",
    )
    names = {user.name: user for user in config.access.users}
    assert set(names) == {"alice", "bob", "carol"}
    assert names["alice"].password_hash == HASH and names["alice"].password_file == bare
    assert names["bob"].password_hash == made and names["bob"].password_file == htpasswd


@pytest.mark.parametrize(
    ("text", "where", "words"),
    [
        ("[access]\nenabeld = true\n", "access.enabeld", "did you mean 'enabled'"),
        ('[[access.users]]\nname = "a:b"\npassword_hash = "x"\n', "access.users[0].name", "invalid name"),
        ('[[access.users]]\nname = "anonymous"\npassword_hash = "x"\n', "access.users[0].name", "reserved"),
        (
            '[[access.users]]\nname = "a"\npassword_hash = "hunter2"\n',
            "access.users[0].password_hash",
            "not a",
        ),
        ('[[access.users]]\nname = "a"\n', "access.users[0]", "needs one of"),
        (
            f'[[access.users]]\nname = "a"\npassword_hash = "{HASH}"\n[[access.users]]\nname = "a"\n'
            f'password_hash = "{HASH}"\n',
            "access.users[1].name",
            "twice",
        ),
        (
            '[[access.users]]\nname = "a"\npassword_file = "missing"\n',
            "access.users[0].password_file",
            "cannot",
        ),
        ('[[access.tokens]]\nname = "ci"\nid = "abc"\nhash = "x"\n', "access.tokens[0].id", "8 lower-case"),
        (
            '[[access.tokens]]\nname = "ci"\nid = "abcd1234"\nhash = "sha256:00"\n',
            "access.tokens[0].hash",
            "sha256:",
        ),
        (
            f'[[access.tokens]]\nname = "ci"\nid = "abcd1234"\nhash = "sha256:{"0" * 64}"\n'
            'expires = "soon"\n',
            "access.tokens[0].expires",
            "date-time",
        ),
        ('[[access.clients]]\ncidr = "10.0.0.0/99"\nidentity = "x"\n', "access.clients[0].cidr", "CIDR"),
        ('[[access.acl]]\nwho = "@nobody"\nactions = ["pull"]\n', "access.acl[0].who", "no group"),
        ('[[access.acl]]\nwho = "a"\nactions = ["read"]\n', "access.acl[0].actions", "unknown action"),
        ('[[access.acl]]\nwho = "a"\n', "access.acl[0].actions", "required"),
        (
            '[[access.acl]]\nwho = "a"\nactions = ["pull"]\neffect = "maybe"\n',
            "access.acl[0].effect",
            "allow",
        ),
        (
            '[[access.acl]]\nwho = "a"\nactions = ["pull"]\nrepository = "a b"\n',
            "access.acl[0].repository",
            "",
        ),
        ('[access]\nverdict_ttl = "2h"\n', "access.verdict_ttl", "at most"),
        ("[access]\nrequests_per_minute = 0\n", "access.requests_per_minute", "at least 1"),
        ('[access]\nrequests_per_minute = "lots"\n', "access.requests_per_minute", "whole number"),
        ("[access]\nrequests_per_minute = 1.5\n", "access.requests_per_minute", "whole number"),
        ('[access]\nbytes_per_second = "fast"\n', "access.bytes_per_second", "invalid size"),
        ('[access]\nbytes_per_second = "unlimited"\n', "access.bytes_per_second", "[[access.limits]]"),
        ("[[access.limits]]\nrequests_per_minute = 5\n", "access.limits[0].who", "required"),
        ('[[access.limits]]\nwho = "@ghosts"\nrequests_per_minute = 5\n', "access.limits[0].who", "no group"),
        ('[[access.limits]]\nwho = "*"\nrequests_per_minute = 5\n', "access.limits[0].who", "everyone"),
        ('[[access.limits]]\nwho = "ci"\n', "access.limits[0]", "needs requests_per_minute"),
        ('[[access.limits]]\nwho = "ci"\nburst = 5\n', "access.limits[0].burst", ""),
    ],
)
def test_errors_name_the_file_and_key(tmp_path: Path, text: str, where: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    assert caught.value.where == f"{tmp_path / 'config.toml'}: {where}"
    assert words in caught.value.message


def test_htpasswd_lines_with_other_hash_kinds_are_refused_by_line(tmp_path: Path) -> None:
    (tmp_path / "htpasswd").write_text("bob:$apr1$salt$hashhashhashhashhashha\n")
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, '[access]\nhtpasswd_file = "htpasswd"\n')
    assert caught.value.where == f"{tmp_path / 'htpasswd'}:1"
    assert "apr1" not in str(caught.value)


def test_rate_limits_for_everyone_and_per_identity(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        '[access]\nrequests_per_minute = 600\nbytes_per_second = "50m"\n'
        '[[access.groups]]\nname = "ci"\nmembers = ["runner"]\n'
        '[[access.limits]]\nwho = "@ci"\nrequests_per_minute = 6000\n'
        '[[access.limits]]\nwho = "alice"\nbytes_per_second = "unlimited"\n',
    )
    access = config.access
    assert access.limit == RateLimit(600, 50 * 1024**2)
    assert access.limits == (
        IdentityLimit("@ci", RateLimit(requests_per_minute=6000)),
        IdentityLimit("alice", RateLimit(bytes_per_second=UNLIMITED)),
    )
