"""The registry API as the appliance serves it: cache first, upstream when needed.

One ``RegistryProxy.handle`` call serves one client request for one upstream registry, whichever
way it arrived (a MITM tunnel or mirror mode), and publishes exactly one event for it.  It routes
the request (blobs to ``registry.blobs``, manifests to ``registry.manifests``, everything else
through ``registry.gate``'s relay), answers ``/v2/`` itself when the upstream cannot, and turns
the errors of any of them into the OCI error JSON.  The request is one ``outcome.Call``; each
service returns its outcome, and ``outcome.event`` makes the event of both.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from urllib.parse import parse_qsl

from aiohttp import web

from appliance import oci
from appliance.cache import BlobCache, ManifestCache
from appliance.config.model import Config, RegistryConfig
from appliance.errors import ErrorCode, RegistryError, UpstreamError
from appliance.events import CacheStatus, EventBus, RequestKind
from appliance.logsafe import shown
from appliance.oci import Endpoint, Route
from appliance.registry import request_input
from appliance.registry.authorize import Authorization, Authorizer, mount_source, scope_actions
from appliance.registry.blobs import BlobService
from appliance.registry.gate import GatedUpstream
from appliance.registry.health import UpstreamHealth
from appliance.registry.manifests import ManifestService
from appliance.registry.outcome import Call, Outcome, Reply, Served, event, failure, kind_of, relayed
from appliance.registry.pullahead import PullAhead
from appliance.registry.request_context import RequestContext
from appliance.registry.request_input import BadRequest
from appliance.registry.responses import error_response, ping_response, relay_response
from appliance.registry.tags import TagListService
from appliance.upstream import challenges as auth
from appliance.upstream.client import UpstreamClient

log = logging.getLogger("appliance.registry")

# How long an upstream's 200 to ``/v2/`` is taken as its answer for the next client that sends no
# credentials of its own.  Every pull starts with that ping, and a registry 20-100 ms away makes
# it a round trip on every warm pull; the answer only says "this is a v2 registry we may use".
PING_TTL = 30.0


class NotRegistryApi(RegistryError):
    """A path that is not the registry API: refused, nothing sent upstream (no credentials leak)."""

    def __init__(self, host: str, path: str) -> None:
        super().__init__(
            404,
            ErrorCode.NAME_UNKNOWN,
            f"only the registry API (/v2/...) is served for {host}, not {shown(path)!r}; nothing was sent",
        )


@dataclass
class RegistryProxy:
    """Serves registry API requests for configured registries through the cache."""

    config: Callable[[], Config]
    upstream: UpstreamClient
    blobs: BlobCache
    manifests: ManifestCache
    events: EventBus
    health: UpstreamHealth = field(default_factory=UpstreamHealth)
    pull_ahead: PullAhead | None = None
    active: int = field(default=0, init=False)  # requests being served, until their event is out
    clock: Callable[[], float] = time.monotonic
    # registry host -> (the config it was answered under, when): a reload forgets them all.
    _pings: dict[str, tuple[Config, float]] = field(default_factory=dict, init=False, repr=False)
    # Built once from the fields above; they share this proxy's collaborators.
    _gate: GatedUpstream = field(init=False, repr=False, compare=False)
    _blob_api: BlobService = field(init=False, repr=False, compare=False)
    _manifest_api: ManifestService = field(init=False, repr=False, compare=False)
    _tags_api: TagListService = field(init=False, repr=False, compare=False)
    # Names a client's own upstream credential in the cache's passthrough links without holding it:
    # an HMAC under this key, made at start (so the names mean nothing outside this process).
    _credential_key: bytes = field(default_factory=lambda: secrets.token_bytes(32), init=False, repr=False)
    # Who may do what (the ACL) and how often (rate limits): asked before anything else.
    authorizer: Authorizer = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.authorizer = Authorizer(self.config)
        self._gate = GatedUpstream(self.upstream, self.health)
        self._blob_api = BlobService(self.blobs, self._gate, self.pull_ahead, self.config)
        self._manifest_api = ManifestService(self.config, self.manifests, self._gate, self.pull_ahead)
        self._tags_api = TagListService(self._gate)

    async def handle(
        self,
        request: web.BaseRequest,
        context: RequestContext,
        path: str,
        *,
        query: Iterable[tuple[str, str]] | None = None,
    ) -> web.StreamResponse:
        """Serve the registry API request ``path`` (decoded) with ``query`` for ``context.registry``.

        ``path`` is as the upstream knows it (a mirror's registry prefix removed); the upstream is
        asked for a path rebuilt from its validated parts.  ``BadRequest`` for invalid input and
        ``NotRegistryApi`` for anything but the registry API, both before anything goes upstream.
        Without ``query``, ``path`` may carry one after a ``?`` (``request.path_qs``).
        """
        if query is None:
            path, _, query_text = path.partition("?")
            query = parse_qsl(query_text, keep_blank_values=True)
        query = tuple(query)
        registry = context.registry
        request_input.check_headers(request.headers)
        api = request_input.api_request(path, query)
        if api is None:
            raise NotRegistryApi(registry.host, path)
        authorization = request_input.single_header(request.headers, "Authorization")
        call = Call(
            client=str(context.client),
            registry=registry.host,
            identity=context.identity.name if context.identity is not None else "",
            method=request.method,
            route=api.route,
            path_qs=api.upstream_path_qs,
            kind=kind_of(api.route),
            authorization=authorization,
            credential=self._credential_name(authorization),
        )
        decided = self.authorizer.authorize(
            context.identity,
            context.client.host,
            context.mode,
            registry.host,
            request.method,
            api.route,
            scopes=mount_source(request.method, api.route, query),
        )
        return await self._serve(request, registry, call, decided)

    def _credential_name(self, authorization: str | None) -> str:
        """The keyed hash naming a client's own upstream credential ("" for none)."""
        if authorization is None or not authorization.strip():
            return ""
        digest = hmac.new(
            self._credential_key, authorization.encode("utf-8", "surrogateescape"), hashlib.sha256
        )
        return digest.hexdigest()[:32]

    async def relay_token(
        self,
        request: web.BaseRequest,
        context: RequestContext,
        path: str,
        query: Iterable[tuple[str, str]],
        *,
        authorization: str | None,
    ) -> web.StreamResponse:
        """Relay a request to a token realm: the client's own ``Authorization``, else ``authorization``.

        Never the engine's other credentials: ``authorization`` is the seed-style Basic credential
        the caller chose for a token request, or None.
        """
        registry = context.registry
        request_input.check_headers(request.headers)
        clean = request_input.clean_path(path)
        if clean is None:
            raise BadRequest(ErrorCode.NAME_INVALID, f"not a plain path: {shown(path)!r}")
        call = Call(
            client=str(context.client),
            registry=registry.host,
            identity=context.identity.name if context.identity is not None else "",
            method=request.method,
            route=Route(Endpoint.OTHER),
            path_qs=clean + request_input.query_string(query),
            kind=RequestKind.TOKEN,
            authorization=request_input.single_header(request.headers, "Authorization") or authorization,
        )
        # A token names its repositories in its scope: each must be allowed, or the engine's
        # credentials (``authorization``) would fetch a token for a repository the client may not read.
        decided = self.authorizer.authorize(
            context.identity,
            context.client.host,
            context.mode,
            registry.host,
            request.method,
            Route(Endpoint.PING),
            scopes=scope_actions(query),
        )
        return await self._serve(request, registry, call, decided, token=True)

    async def _serve(
        self,
        request: web.BaseRequest,
        registry: RegistryConfig,
        call: Call,
        decided: Authorization,
        *,
        token: bool = False,
    ) -> web.StreamResponse:
        if decided.result:
            who = decided.identity.name if decided.identity is not None else call.identity
            pace = decided.pacer.pace if decided.pacer is not None else None
            call = replace(call, identity=who, pace=pace).decided(decided.result, decided.reason)
        self.active += 1
        try:
            if decided.error is not None:
                return self._refuse(registry, call, decided.error)
            return await self._handle(request, registry, call, token)
        finally:
            self.active -= 1

    def _refuse(self, registry: RegistryConfig, call: Call, error: RegistryError) -> web.StreamResponse:
        """An access refusal: answered before the cache or the upstream is asked anything."""
        outcome, answer = failure(error, registry.host)
        self.events.publish(event(call, outcome))
        response = error_response(answer)
        if error.status == 407:
            response.set_status(407, "Proxy Authentication Required")
        return response

    async def _handle(
        self, request: web.BaseRequest, registry: RegistryConfig, call: Call, token: bool
    ) -> web.StreamResponse:
        outcome: Outcome
        try:
            if token:
                reply = await self._gate.relay(request, registry, call, inject=False)
            else:
                reply = await self._route(request, registry, call)
        except (RegistryError, UpstreamError) as exc:
            outcome, answer = failure(exc, registry.host)
            response: web.StreamResponse = error_response(answer)
        else:
            outcome, response = reply.outcome, reply.response
        if outcome.status is CacheStatus.ERROR:
            log.warning(
                "%s %s %s %s: %s",
                registry.host,
                call.route.repository or "-",
                request.method,
                shown(call.path_qs.split("?", 1)[0]),
                shown(outcome.message, 500),
            )
        self.events.publish(event(call, outcome))
        return response

    async def _route(self, request: web.BaseRequest, registry: RegistryConfig, call: Call) -> Reply:
        method = request.method
        endpoint = call.route.endpoint
        if endpoint is Endpoint.V1:
            raise oci.v1_refused(registry.host)
        if method not in ("GET", "HEAD"):
            if not self.config().effective_allow_push(registry):
                raise oci.push_disabled(method, registry.host)
            return await self._gate.relay(request, registry, call, actions=("pull", "push"))
        if endpoint is Endpoint.PING:
            return await self._ping(request, registry, call)
        if endpoint is Endpoint.BLOB:
            return await self._blob_api.serve(request, registry, call)
        if endpoint is Endpoint.MANIFEST:
            return await self._manifest_api.serve(request, registry, call)
        if endpoint is Endpoint.TAGS:
            return await self._tags_api.serve(request, registry, call)
        return await self._gate.relay(request, registry, call)

    # -- /v2/ ----------------------------------------------------------------------------------

    async def _ping(self, request: web.BaseRequest, registry: RegistryConfig, call: Call) -> Reply:
        config = self.config()
        anonymous = call.authorization is None
        if anonymous:
            seen = self._pings.get(registry.host)
            if seen is not None and seen[0] is config and self.clock() - seen[1] < PING_TTL:
                return Reply(ping_response(), Served(CacheStatus.HIT))
        try:
            answer = await self._gate.request(
                registry, "GET", "/v2/", client_authorization=call.authorization
            )
        except UpstreamError as exc:
            return self._local_ping(f"upstream unreachable, answering /v2/ locally: {exc.message}", None)
        if answer.status == 429 or answer.status >= 500:
            await answer.release()
            return self._local_ping(
                f"upstream answered {answer.status}, answering /v2/ locally", answer.status
            )
        if anonymous and answer.status == 200:
            self._pings[registry.host] = (config, self.clock())
        elif anonymous:
            self._pings.pop(registry.host, None)
            challenge = auth.challenge_from(answer.headers.getall("WWW-Authenticate", ()))
            if answer.status == 401 and auth.repository_accounts_answer_ping(
                config.credentials, registry, challenge
            ):
                await answer.release()
                # Cached as an upstream 200 would be: the answer only changes with the config.
                self._pings[registry.host] = (config, self.clock())
                why = "answered locally: per-repository Basic accounts, none for /v2/"
                return Reply(
                    ping_response(), Served(CacheStatus.BYPASS, 200, upstream_status=401, message=why)
                )
        return relayed(await relay_response(request, answer))

    @staticmethod
    def _local_ping(why: str, upstream_status: int | None) -> Reply:
        # Offline: cached images stay pullable, and clients ping /v2/ before anything else.
        return Reply(ping_response(), Served(CacheStatus.STALE, upstream_status=upstream_status, message=why))
