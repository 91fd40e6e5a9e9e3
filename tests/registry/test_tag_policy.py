"""``tag_policy``: when a tag is served cached, revalidated, served stale, relayed or fetched.

One table per step of serving a tag; each row is a situation and the decision it must get.  The
I/O around these decisions is exercised through a real proxy in ``test_manifests.py``.
"""

from __future__ import annotations

import pytest

from appliance.config.model import ManifestCachePolicy, RegistryConfig
from appliance.registry.tag_policy import Answer, Asked, Decision, answer_of, decide, ttl_for

HOUR = 3600.0

# (cached, head, age, ttl) -> decision, before anything is asked upstream.
BEFORE_UPSTREAM = [
    pytest.param(True, False, 10.0, HOUR, Decision.SERVE_CACHED, id="fresh GET: served cached"),
    pytest.param(True, True, 10.0, HOUR, Decision.SERVE_CACHED, id="fresh HEAD: served cached"),
    pytest.param(True, False, HOUR, HOUR, Decision.REVALIDATE, id="exactly ttl old: revalidated"),
    pytest.param(True, False, 2 * HOUR, HOUR, Decision.REVALIDATE, id="older than ttl: revalidated"),
    pytest.param(True, True, 2 * HOUR, HOUR, Decision.REVALIDATE, id="older HEAD: revalidated"),
    pytest.param(True, False, 0.0, 0.0, Decision.REVALIDATE, id="ttl 0 (caching off): always revalidated"),
    pytest.param(False, False, 0.0, HOUR, Decision.FETCH, id="not cached GET: fetched"),
    pytest.param(False, True, 0.0, HOUR, Decision.RELAY, id="not cached HEAD: relayed, no GET spent"),
]


@pytest.mark.parametrize(("cached", "head", "age", "ttl", "expected"), BEFORE_UPSTREAM)
def test_before_asking_upstream_a_tag_is_served_by_age_or_sent_upstream(
    cached: bool, head: bool, age: float, ttl: float, expected: Decision
) -> None:
    assert decide(cached=cached, head=head, age=age, ttl=ttl) is expected


# (head, answer to the revalidation HEAD) -> decision; a revalidated tag is always cached.
AFTER_REVALIDATION = [
    pytest.param(False, Answer.CURRENT, Decision.SERVE_REVALIDATED, id="same digest: revalidated"),
    pytest.param(True, Answer.CURRENT, Decision.SERVE_REVALIDATED, id="same digest, HEAD: revalidated"),
    pytest.param(False, Answer.UNREACHABLE, Decision.SERVE_STALE, id="unreachable: stale"),
    pytest.param(True, Answer.UNREACHABLE, Decision.SERVE_STALE, id="unreachable, HEAD: stale"),
    pytest.param(False, Answer.UNAVAILABLE, Decision.SERVE_STALE, id="429 or 5xx: stale"),
    pytest.param(False, Answer.OK, Decision.FETCH, id="moved tag: fetched"),
    pytest.param(True, Answer.OK, Decision.RELAY, id="moved tag, HEAD: the upstream's answer"),
    pytest.param(False, Answer.REFUSED, Decision.FETCH, id="refused: the GET's own answer"),
    pytest.param(True, Answer.REFUSED, Decision.RELAY, id="refused, HEAD: the upstream's answer"),
]


@pytest.mark.parametrize(("head", "answer", "expected"), AFTER_REVALIDATION)
def test_after_revalidation_the_upstream_answer_decides(
    head: bool, answer: Answer, expected: Decision
) -> None:
    assert decide(cached=True, head=head, asked=Asked.REVALIDATION, answer=answer) is expected


# (a cached copy to fall back on, answer to the GET) -> decision.
AFTER_FETCH = [
    pytest.param(False, Answer.OK, Decision.STORE, id="200: stored and served"),
    pytest.param(True, Answer.OK, Decision.STORE, id="200 with an old copy: the new one stored"),
    pytest.param(True, Answer.UNREACHABLE, Decision.SERVE_STALE, id="unreachable with a copy: stale"),
    pytest.param(True, Answer.UNAVAILABLE, Decision.SERVE_STALE, id="429/5xx with a copy: stale"),
    pytest.param(False, Answer.UNREACHABLE, Decision.FAIL, id="unreachable, nothing cached: fails"),
    pytest.param(False, Answer.UNAVAILABLE, Decision.FAIL, id="429/5xx, nothing cached: fails"),
    pytest.param(True, Answer.REFUSED, Decision.FAIL, id="404 with a copy: the 404, never stale"),
    pytest.param(False, Answer.REFUSED, Decision.FAIL, id="401: the client's answer"),
]


@pytest.mark.parametrize(("cached", "answer", "expected"), AFTER_FETCH)
def test_after_a_fetch_only_an_unanswering_upstream_falls_back_to_the_cache(
    cached: bool, answer: Answer, expected: Decision
) -> None:
    assert decide(cached=cached, head=False, asked=Asked.FETCH, answer=answer) is expected


ANSWERS = [
    pytest.param(None, False, Answer.UNREACHABLE, id="no answer"),
    pytest.param(429, False, Answer.UNAVAILABLE, id="429"),
    pytest.param(500, False, Answer.UNAVAILABLE, id="500"),
    pytest.param(503, True, Answer.UNAVAILABLE, id="503 naming the digest is still unavailable"),
    pytest.param(200, True, Answer.CURRENT, id="200 naming the cached digest"),
    pytest.param(200, False, Answer.OK, id="200 for other content"),
    pytest.param(404, False, Answer.REFUSED, id="404"),
    pytest.param(401, True, Answer.REFUSED, id="401 with a matching header is still refused"),
    pytest.param(304, False, Answer.REFUSED, id="anything else"),
]


@pytest.mark.parametrize(("status", "current", "expected"), ANSWERS)
def test_an_upstream_status_is_classified_for_the_policy(
    status: int | None, current: bool, expected: Answer
) -> None:
    assert answer_of(status, current=current) is expected


POLICY = ManifestCachePolicy(enabled=True)

TTLS = [
    pytest.param(RegistryConfig(host="r.test", tag_ttl=42.0), "latest", 42.0, id="registry tag_ttl wins"),
    pytest.param(
        RegistryConfig(host="r.test", tag_ttl=42.0, manifest_cache=False), "v1", 42.0, id="tag_ttl beats off"
    ),
    pytest.param(RegistryConfig(host="r.test", manifest_cache=False), "v1.2.3", 0.0, id="caching off: 0"),
]


@pytest.mark.parametrize(("registry", "tag", "expected"), TTLS)
def test_a_registry_setting_overrides_the_policy_tiers(
    registry: RegistryConfig, tag: str, expected: float
) -> None:
    assert ttl_for(registry, POLICY, tag) == expected


def test_without_registry_settings_the_policy_tier_of_the_tag_applies() -> None:
    registry = RegistryConfig(host="r.test")

    assert ttl_for(registry, POLICY, "stable") == 600.0
    assert ttl_for(registry, POLICY, "v1.2.3") == 60 * 86400.0
    assert ttl_for(registry, POLICY, "latest") == POLICY.default_ttl
    assert ttl_for(registry, ManifestCachePolicy(enabled=False), "latest") == 0.0


def test_a_registry_forcing_caching_on_gets_the_default_ttl_when_the_policy_is_off() -> None:
    policy = ManifestCachePolicy(enabled=False)
    registry = RegistryConfig(host="r.test", manifest_cache=True)

    assert ttl_for(registry, policy, "latest") == policy.default_ttl
