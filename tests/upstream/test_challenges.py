"""The pure half of upstream auth: challenges, credential choice, realm allowlist, tokens."""

from __future__ import annotations

import datetime
import json

import pytest

from appliance.config.model import Credential, RegistryConfig, Scheme, Secret, docker_hub
from appliance.upstream.challenges import (
    Challenge,
    Token,
    TokenCache,
    TokenError,
    basic_authorization,
    challenge_from,
    choose_credential,
    parse_token_response,
    parse_www_authenticate,
    pick_challenge,
    realm_allows_credentials,
    realm_host,
    repository_scope,
)

HUB = docker_hub()
LAB = RegistryConfig(host="lab.test:5000", scheme=Scheme.HTTP)
PRIVATE = RegistryConfig(host="registry.example.com", auth_hosts=("auth.example.com",))


def cred(scope: str, user: str = "u") -> Credential:
    return Credential(scope=scope, username=user, password=Secret("pw-" + user))


# -- challenges -----------------------------------------------------------------------------------


def test_docker_hub_bearer_challenge_is_parsed():
    value = (
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/alpine:pull"'
    )
    [challenge] = parse_www_authenticate(value)
    assert challenge.scheme == "bearer"
    assert challenge.realm == "https://auth.docker.io/token"
    assert challenge.param("service") == "registry.docker.io"
    assert challenge.param("scope") == "repository:library/alpine:pull"


def test_quoted_commas_escapes_and_several_challenges():
    value = (
        'Negotiate abc==, BEARER realm="https://a.test/t?x=1,2", error=insufficient_scope,'
        ' Basic realm="r\\"q"'
    )
    challenges = parse_www_authenticate(value)
    assert [c.scheme for c in challenges] == ["negotiate", "bearer", "basic"]
    assert challenges[0].param("") == "abc=="
    assert challenges[1].realm == "https://a.test/t?x=1,2"
    assert challenges[1].param("error") == "insufficient_scope"
    assert challenges[2].realm == 'r"q'


@pytest.mark.parametrize("value", ["", "   ", ",,,", '="x"', "Bearer realm="])
def test_junk_never_raises(value):
    assert isinstance(parse_www_authenticate(value), list)


def test_bearer_with_realm_is_preferred_over_basic():
    challenges = parse_www_authenticate('Basic realm="x", Bearer realm="https://a.test/t"')
    assert pick_challenge(challenges) == Challenge("bearer", (("realm", "https://a.test/t"),))
    assert pick_challenge(parse_www_authenticate("Bearer")) is None
    assert pick_challenge(parse_www_authenticate("Negotiate abc")) is None


def test_repository_scope_format():
    assert repository_scope("team/app", ("pull", "push")) == "repository:team/app:pull,push"


# -- credential choice ----------------------------------------------------------------------------


def test_seed_style_auth_docker_io_credential_applies_to_docker_hub():
    seed = cred("auth.docker.io")
    assert choose_credential([seed], HUB, "library/alpine") is seed


def test_longest_repository_prefix_wins_over_host_credential():
    host, org = cred("docker.io", "host"), cred("docker.io/orgA", "org")
    team = cred("docker.io/orgA/team", "team")
    creds = [host, org, team]
    assert choose_credential(creds, HUB, "orgA/team/app") is team
    assert choose_credential(creds, HUB, "orgA/other") is org
    assert choose_credential(creds, HUB, "orgAB/app") is host  # a prefix is a path, not a string prefix
    assert choose_credential(creds, HUB, None) is host


def test_own_host_wins_over_auth_host_and_other_registries_are_ignored():
    own, auth_host = cred("registry-1.docker.io", "own"), cred("auth.docker.io", "auth")
    assert choose_credential([auth_host, own], HUB, "x/y") is own
    assert choose_credential([cred("quay.io")], HUB, "x/y") is None
    assert choose_credential([cred("docker.io/orgA")], HUB, "orgB/app") is None


def test_credential_with_port_matches_registry_with_port():
    lab = cred("lab.test:5000")
    assert choose_credential([cred("lab.test"), lab], LAB, "a") is lab


# -- realm allowlist ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("realm", "registry", "allowed"),
    [
        ("https://auth.docker.io/token", HUB, True),
        ("https://registry-1.docker.io/token", HUB, True),
        ("https://AUTH.docker.io./token", HUB, True),
        ("https://auth.docker.io:443/token", HUB, True),
        ("https://auth.docker.io:8443/token", HUB, False),
        ("http://auth.docker.io/token", HUB, False),  # never a downgrade to plain HTTP
        ("https://evil.test/token", HUB, False),
        ("https://auth.docker.io.evil.test/token", HUB, False),
        ("https://user@evil.test/token", HUB, False),
        ("https://other.docker.io/token", HUB, False),  # same domain is not enough
        ("https://auth.example.com/token", PRIVATE, True),
        ("http://lab.test:5000/token", LAB, True),
        ("http://lab.test/token", LAB, False),
        ("ftp://auth.docker.io/token", HUB, False),
        ("not a url", HUB, False),
        ("https://[::1/token", HUB, False),
    ],
)
def test_realm_allowlist(realm, registry, allowed):
    assert realm_allows_credentials(realm, registry) is allowed


def test_realm_host_for_logs_drops_userinfo_and_query():
    assert realm_host("https://u:p@auth.test:8443/token?scope=x") == "auth.test:8443"


def test_basic_authorization_encodes_user_and_password():
    assert basic_authorization(cred("x", "alice")) == "Basic YWxpY2U6cHctYWxpY2U="


# -- tokens ---------------------------------------------------------------------------------------


def test_token_and_access_token_and_default_lifetime():
    now = 1_000_000.0
    token = parse_token_response(b'{"token": "t1"}', now)
    assert token.value == "t1"
    assert now + 40 <= token.expires_at < now + 60  # 60 s default, minus the margin
    assert parse_token_response(b'{"access_token": "t2", "expires_in": 300}', now).value == "t2"


def test_issued_at_shortens_the_lifetime():
    now = datetime.datetime(2026, 1, 1, 12, 0, 0, tzinfo=datetime.UTC).timestamp()
    body = json.dumps({"token": "t", "expires_in": 300, "issued_at": "2026-01-01T11:58:20Z"}).encode()
    token = parse_token_response(body, now)
    assert token.expires_at == pytest.approx(now + 200 - 10)


@pytest.mark.parametrize("body", [b"", b"not json", b"[]", b'{"token": ""}', b'{"token": 5}', b"\xff\xfe"])
def test_unusable_token_responses(body):
    with pytest.raises(TokenError):
        parse_token_response(body, 0.0)


def test_nonsense_expiry_falls_back_to_default():
    token = parse_token_response(b'{"token": "t", "expires_in": -5, "issued_at": "yesterday"}', 100.0)
    assert 100 + 40 <= token.expires_at < 160


def test_token_repr_hides_the_value():
    assert "sekrit" not in repr(Token("sekrit", 1.0))


def test_token_cache_expires_and_stays_bounded():
    cache = TokenCache(max_entries=2)
    a, b, c = ("r", None, "a"), ("r", ("s", "u"), "b"), ("r", None, "c")
    cache.put(a, Token("ta", 100.0))
    assert cache.get(a, 99.0) == Token("ta", 100.0)
    assert cache.get(a, 100.0) is None and len(cache) == 0
    cache.put(a, Token("ta", 100.0))
    cache.put(b, Token("tb", 100.0))
    cache.get(a, 0.0)  # a is now the most recently used
    cache.put(c, Token("tc", 100.0))
    assert cache.get(b, 0.0) is None
    assert cache.get(a, 0.0) is not None and cache.get(c, 0.0) is not None


def test_challenge_from_reads_every_www_authenticate_value_and_prefers_bearer() -> None:
    values = ['Basic realm="lab"', 'Bearer realm="https://auth.example.com/token",service="registry"']
    challenge = challenge_from(values)
    assert challenge is not None and challenge.realm == "https://auth.example.com/token"
    basic = challenge_from(['Basic realm="lab"'])
    assert basic is not None and basic.scheme == "basic"
    assert challenge_from([]) is None
    assert challenge_from(["Negotiate abc"]) is None
