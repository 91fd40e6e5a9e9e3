"""Issue 19, the pure rule: when a Basic-challenged ``/v2/`` ping is the engine's to answer.

The end-to-end behaviour (real nginx + distribution, skopeo in both modes) is
``tests/e2e/test_basic_prefix_credentials.py``.
"""

from __future__ import annotations

import pytest

from appliance.auth import Challenge, repository_accounts_answer_ping
from appliance.config import Credential, RegistryConfig, Secret

PRIVATE = RegistryConfig(host="private.test", aliases=("alias.test",))
BASIC = Challenge("basic", (("realm", "private"),))
BEARER = Challenge("bearer", (("realm", "https://private.test/token"),))


def cred(scope: str, user: str = "u") -> Credential:
    return Credential(scope=scope, username=user, password=Secret("canary-" + user))


@pytest.mark.parametrize("scope", ["private.test/secret", "alias.test/team/a"])
def test_a_basic_ping_is_answered_for_a_registry_whose_accounts_are_all_per_repository(scope: str) -> None:
    assert repository_accounts_answer_ping([cred(scope)], PRIVATE, BASIC)


@pytest.mark.parametrize(
    ("credentials", "challenge"),
    [
        # A registry-level account answers the ping itself.
        ([cred("private.test/secret", "team"), cred("private.test", "all")], BASIC),
        # Token registries answer the ping with an anonymous token.
        ([cred("private.test/secret")], BEARER),
        # No account of ours for this registry: the client's own login takes over.
        ([], BASIC),
        ([cred("other.test/secret")], BASIC),
        ([cred("private.test/secret")], None),
    ],
    ids=["registry-level", "bearer", "none", "other-registry", "no-challenge"],
)
def test_every_other_ping_challenge_goes_to_the_client(
    credentials: list[Credential], challenge: Challenge | None
) -> None:
    assert not repository_accounts_answer_ping(credentials, PRIVATE, challenge)
