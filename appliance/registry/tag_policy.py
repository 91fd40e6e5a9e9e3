"""When a manifest tag is served from the cache, revalidated, served stale, or fetched: one pure rule.

``manifests.ManifestService`` asks ``decide`` at each step of serving a tag - before going upstream,
after the revalidation ``HEAD``, after the ``GET`` - and does what it says; nothing here does I/O.

* Fresh (younger than its TTL): served from the cache (HIT), nothing sent upstream.
* Older: one ``HEAD`` upstream.  The same digest: served from the cache (REVALIDATED).  No answer
  (unreachable, or known down), 429 or 5xx: the cached copy is served STALE - cached images stay
  pullable while the upstream cannot say otherwise.  Anything else (the tag moved, 401, 404):
  a ``HEAD`` gets the upstream's own answer, a ``GET`` fetches.
* Not cached: a ``HEAD`` is relayed, a ``GET`` fetches.  A fetch that gets no answer, 429 or 5xx
  serves the tag's cached copy STALE if there is one; any other failure is the client's answer.
"""

from __future__ import annotations

from enum import StrEnum

from appliance.config.model import ManifestCachePolicy, RegistryConfig


class Asked(StrEnum):
    """What has been asked upstream so far for this request."""

    NOTHING = "nothing"
    REVALIDATION = "revalidation"  # HEAD for the tag, to compare digests
    FETCH = "fetch"  # GET for the tag


class Answer(StrEnum):
    """What the upstream said to the last request, as the policy needs to know it."""

    NONE = "none"  # nothing asked yet
    UNREACHABLE = "unreachable"  # no answer: refused, timed out, or known down (not asked)
    UNAVAILABLE = "unavailable"  # 429 or 5xx: there, but cannot answer now
    CURRENT = "current"  # 200 naming the digest the cache holds for the tag
    OK = "ok"  # 200 for other content (a moved tag, or a fetch)
    REFUSED = "refused"  # any other answer: 401, 403, 404, ...


class Decision(StrEnum):
    SERVE_CACHED = "serve cached"  # HIT: fresh, nothing asked
    REVALIDATE = "revalidate"  # HEAD upstream, then decide again
    SERVE_REVALIDATED = "serve revalidated"  # REVALIDATED: the upstream names the cached digest
    SERVE_STALE = "serve stale"  # STALE: the cached copy, as the upstream cannot answer
    RELAY = "relay"  # a HEAD: the upstream's own answer (the one it gave, or ask it)
    FETCH = "fetch"  # GET upstream, then decide again
    STORE = "store"  # MISS: the fetched manifest is stored and served
    FAIL = "fail"  # the upstream's failure is the client's answer


def answer_of(status: int | None, *, current: bool = False) -> Answer:
    """An upstream HTTP status (None: no answer) as an ``Answer``; ``current``: it names the cached digest."""
    if status is None:
        return Answer.UNREACHABLE
    if status == 429 or status >= 500:
        return Answer.UNAVAILABLE
    if status == 200:
        return Answer.CURRENT if current else Answer.OK
    return Answer.REFUSED


def decide(
    *,
    cached: bool,
    head: bool,
    age: float = 0.0,
    ttl: float = 0.0,
    asked: Asked = Asked.NOTHING,
    answer: Answer = Answer.NONE,
) -> Decision:
    """The next step for a tag request.

    ``cached``: the cache holds the tag and its manifest (after a fetch: a copy to serve stale);
    ``age``: seconds since the tag was fetched or last revalidated; ``ttl``: how long it stays
    fresh (``ttl_for``); ``head``: the client asked with HEAD; ``asked``/``answer``: the upstream
    request made so far and what came of it.
    """
    unanswered = answer in (Answer.UNREACHABLE, Answer.UNAVAILABLE)
    if asked is Asked.NOTHING:
        if cached:
            return Decision.SERVE_CACHED if age < ttl else Decision.REVALIDATE
        return Decision.RELAY if head else Decision.FETCH
    if asked is Asked.REVALIDATION:
        if unanswered:
            return Decision.SERVE_STALE
        if answer is Answer.CURRENT:
            return Decision.SERVE_REVALIDATED
        return Decision.RELAY if head else Decision.FETCH
    if unanswered:
        return Decision.SERVE_STALE if cached else Decision.FAIL
    return Decision.STORE if answer in (Answer.OK, Answer.CURRENT) else Decision.FAIL


def ttl_for(registry: RegistryConfig, policy: ManifestCachePolicy, tag: str) -> float:
    """Seconds ``tag`` stays fresh: the registry's ``tag_ttl``, else the manifest cache policy's tier."""
    if registry.tag_ttl is not None:
        return registry.tag_ttl
    if registry.manifest_cache is False:
        return 0.0
    if registry.manifest_cache is True and not policy.enabled:
        return policy.default_ttl
    return policy.ttl_for(tag)
