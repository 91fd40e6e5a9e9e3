"""The access decision for one registry request, taken before the cache is consulted (issue 17.5, 17.7).

``RegistryProxy.handle`` asks ``Authorizer.authorize`` first thing, with the request's route: the
route names an action (``action_for``: reading manifests, blobs, tags and referrers is ``pull``;
uploads, manifest ``PUT`` and ``DELETE`` are ``push``), the ACL decides it for the request's
identity, and the identity's request rate is checked.  A refusal is answered before the cache or the
upstream is looked at, so it is the same for content the cache holds and content it does not, and
the upstream hears nothing on behalf of a client that may not ask:

* ``denied``: the ACL refuses: ``403 DENIED``;
* ``unauthenticated``: no identity at all (the front door normally stops such a client first):
  ``401`` with a challenge on the mirror, ``407`` on the proxy port;
* ``limited``: over the identity's request rate: ``429 TOOMANYREQUESTS`` with ``Retry-After``.

With access control off every request is allowed and no decision is recorded, as before.  The
identity is the one the front door found (``RequestContext.identity``), else the source network's
(``access.clients``), else the anonymous client, which only a rule for ``*`` or ``anonymous`` admits.

A blind tunnel (a CONNECT to a host the appliance does not intercept) is the action ``tunnel`` on the
CONNECT host (``Authorizer.tunnel``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from appliance.access.acl import AccessPolicy
from appliance.access.bearer import parse_scopes
from appliance.access.identities import ANONYMOUS_IDENTITY, Directory, Identity
from appliance.access.limits import Pacer, RateLimiter, retry_after
from appliance.config.access import Action
from appliance.config.model import Config
from appliance.errors import ErrorCode, RegistryError
from appliance.events import AccessResult, CacheStatus, Event, RequestKind
from appliance.logsafe import shown
from appliance.oci import Endpoint, Route
from appliance.registry.request_context import Mode

REALM = "registry-appliance"
# Where an ``unauthenticated`` refusal sends the client: the mirror asks for ``Authorization``, the
# proxy port for ``Proxy-Authorization``.
_CHALLENGE = {
    Mode.MIRROR: (401, "WWW-Authenticate"),
    Mode.TUNNEL: (407, "Proxy-Authenticate"),
    Mode.FORWARD: (407, "Proxy-Authenticate"),
}


def action_for(method: str, route: Route) -> Action | None:
    """The ACL action a request needs; None for the ``/v2/`` ping, which names no repository.

    Reads (``GET``/``HEAD``) are ``pull``, except on uploads, which only a pusher has; every other
    method writes (``POST``/``PATCH``/``PUT`` uploads and manifests, ``DELETE``) and is ``push``.
    """
    if route.endpoint is Endpoint.PING:
        return None
    if method in ("GET", "HEAD") and route.endpoint is not Endpoint.UPLOAD:
        return Action.PULL
    return Action.PUSH


def scope_actions(query: Iterable[tuple[str, str]]) -> list[tuple[str, Action]]:
    """(repository, action) for every repository scope of a token request (``scope=repository:a:pull``)."""
    out: list[tuple[str, Action]] = []
    for scope in parse_scopes(value for key, value in query if key == "scope"):
        if "pull" in scope.actions:
            out.append((scope.repository, Action.PULL))
        if scope.actions & {"push", "*"}:
            out.append((scope.repository, Action.PUSH))
    return out


def mount_source(method: str, route: Route, query: Iterable[tuple[str, str]]) -> list[tuple[str, Action]]:
    """A cross-repository mount (``POST .../blobs/uploads/?mount=DIGEST&from=REPO``) reads ``REPO``:
    the client needs ``pull`` there too, or the upstream would copy a blob it may not read into a
    repository it may."""
    if method != "POST" or route.endpoint is not Endpoint.UPLOAD:
        return []
    values = dict(query)
    source = values.get("from", "").strip("/")
    return [(source, Action.PULL)] if "mount" in values and source else []


@dataclass(frozen=True, slots=True)
class Authorization:
    """What was decided for one request: ``result`` ("" when access control is off), why, who, and
    the refusal to answer with (None: go on).  ``pacer`` paces the identity's bytes, if limited."""

    result: str
    reason: str = ""
    identity: Identity | None = None
    error: RegistryError | None = None
    pacer: Pacer | None = None

    @property
    def allowed(self) -> bool:
        return self.error is None


def denied(identity: Identity, action: Action, where: str, reason: str) -> Authorization:
    message = f"access denied: {identity.name} may not {action} {where}"
    return Authorization(AccessResult.DENIED, reason, identity, RegistryError(403, ErrorCode.DENIED, message))


def unauthenticated(mode: Mode, reason: str) -> Authorization:
    status, header = _CHALLENGE[mode]
    message = "authentication required: log in to the appliance or put USER:PASSWORD in the proxy URL"
    error = RegistryError(status, ErrorCode.UNAUTHORIZED, message, headers={header: f'Basic realm="{REALM}"'})
    return Authorization(AccessResult.UNAUTHENTICATED, reason, ANONYMOUS_IDENTITY, error)


def limited(identity: Identity, wait: float) -> Authorization:
    seconds = retry_after(wait)
    message = f"too many requests from {identity.name}: retry in {seconds}s"
    error = RegistryError(429, ErrorCode.TOOMANYREQUESTS, message, headers={"Retry-After": str(seconds)})
    reason = f"over the request rate; retry after {seconds}s"
    return Authorization(AccessResult.LIMITED, reason, identity, error)


@dataclass
class Authorizer:
    """Decides registry requests and tunnels under the config of the moment (rebuilt when it changes)."""

    config: Callable[[], Config]
    clock: Callable[[], float] = time.monotonic  # the rate limits' clock
    limiter: RateLimiter = field(init=False)
    _built_for: Config | None = field(default=None, init=False, repr=False)
    _policy: AccessPolicy = field(init=False, repr=False)
    _directory: Directory = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.limiter = RateLimiter(self.config().access, clock=self.clock)
        self._refresh()

    def _refresh(self) -> Config:
        config = self.config()
        if config is not self._built_for:
            self._policy = AccessPolicy.from_config(config)
            self._directory = Directory(config.access)
            self.limiter.update(config.access)
            self._built_for = config
        return config

    @property
    def enabled(self) -> bool:
        return self._refresh().access.enabled

    def identity_of(self, identity: Identity | None, source: str) -> Identity:
        """The identity a request acts as: the front door's, else its network's, else anonymous."""
        if identity is not None:
            return identity
        return self._directory.for_address(source) or ANONYMOUS_IDENTITY

    def authorize(
        self,
        identity: Identity | None,
        source: str,
        mode: Mode,
        registry: str,
        method: str,
        route: Route,
        *,
        scopes: Iterable[tuple[str, Action]] = (),
    ) -> Authorization:
        """The decision for ``method`` on ``route`` of ``registry`` (a configured host).

        ``scopes``: for a token request, the (repository, action) pairs its scope asks for; each
        must be allowed, or the engine would fetch a token the client may not hold.
        """
        config = self._refresh()
        if not config.access.enabled:
            return Authorization("")  # access control off: no decision taken
        who = self.identity_of(identity, source)
        action = action_for(method, route)
        wanted = list(scopes)
        if action is not None and (route.repository or not wanted):
            wanted.insert(0, (route.repository, action))
        reason = "authenticated; no repository named"
        for repository, needed in wanted:
            decision = self._policy.decide(who, registry, repository, needed)
            if not decision.allowed:
                if who is ANONYMOUS_IDENTITY:
                    return unauthenticated(mode, f"no identity; {decision.reason}")
                where = f"{registry}/{repository}" if repository else registry
                return denied(who, needed, where, decision.reason)
            reason = decision.reason
        if who is ANONYMOUS_IDENTITY and not wanted:
            # The ping names no repository: only a client some rule admits gets an answer.
            return unauthenticated(mode, "no identity")
        return self._admitted(who, reason)

    def tunnel(self, identity: Identity | None, source: str, host: str) -> Authorization:
        """The decision for a blind tunnel to ``host`` (action ``tunnel``, the CONNECT host)."""
        config = self._refresh()
        if not config.access.enabled:
            return Authorization("")  # access control off: no decision taken
        who = self.identity_of(identity, source)
        decision = self._policy.decide(who, host, "", Action.TUNNEL)
        if not decision.allowed:
            if who is ANONYMOUS_IDENTITY:
                return unauthenticated(Mode.TUNNEL, f"no identity; {decision.reason}")
            return denied(who, Action.TUNNEL, host, decision.reason)
        return self._admitted(who, decision.reason)

    def _admitted(self, who: Identity, reason: str) -> Authorization:
        wait = self.limiter.admit(who)
        if wait is not None:
            return limited(who, wait)
        return Authorization(AccessResult.ALLOWED, reason, who, pacer=self.limiter.pacer(who))


def decision_event(
    client: str,
    registry: str,
    method: str,
    decided: Authorization,
    *,
    kind: RequestKind = RequestKind.OTHER,
    repository: str = "",
    http_status: int | None = None,
    message: str = "",
) -> Event:
    """The audit event of a decision that is the whole answer (a tunnel, a refusal at the front door)."""
    error = decided.error
    status = http_status if http_status is not None else (error.status if error is not None else 200)
    identity = decided.identity.name if decided.identity is not None else ""
    return Event(
        time=time.time(),
        client=client,
        registry=shown(registry, 300),
        repository=shown(repository, 300),
        kind=kind,
        reference="",
        status=CacheStatus.ERROR if error is not None else CacheStatus.BYPASS,
        method=shown(method, 20),
        http_status=status,
        message=shown(message or (error.message if error is not None else ""), 1000),
        identity=shown(identity, 200),
        access=decided.result,
        access_reason=shown(decided.reason, 500),
    )
