"""The control server: the versioned JSON API (``appliance.protocol``) on a Unix socket, via aiohttp.

``ControlServer`` owns the socket's lifecycle and the routes, and answers the read-only views and
cache actions itself; the rest lives next to it:

* ``control.socket``: creating the socket file (private mode, stale ones replaced, live ones kept).
* ``control.http``: JSON bodies in and out, and the middleware turning failures into the envelope.
* ``control.edits``: configuration edits and reloads (``ConfigSource``: how to rebuild the config).
* ``control.stream``: the events WebSocket (bounded queues per subscriber, coalesced frames).
* ``control.views``: engine state -> protocol records, as plain functions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from appliance import protocol as p
from appliance.control import views as control_views
from appliance.control.access import AccessEndpoints
from appliance.control.edits import ConfigEdits, ConfigSource
from appliance.control.http import error_middleware, json_response, read_body
from appliance.control.socket import bind_control_socket
from appliance.control.stream import EventStream
from appliance.events import Subscription

if TYPE_CHECKING:
    from appliance.engine import Engine

log = logging.getLogger("appliance.control")


class ControlServer:
    """Serves the control API for ``engine`` on ``path`` until ``close()``."""

    def __init__(
        self,
        engine: Engine,
        source: ConfigSource,
        path: Path,
        *,
        group: str | None = None,
    ) -> None:
        self.engine = engine
        self.source = source
        self.path = path
        self.group = group
        self._runner: web.AppRunner | None = None
        self._inode: tuple[int, int] | None = None
        self._edits = ConfigEdits(engine, source)
        self._stream = EventStream(engine.events)

    @property
    def subscriptions(self) -> dict[int, Subscription]:
        """The event stream's live subscriptions, keyed by id()."""
        return self._stream.subscriptions

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        sock = await loop.run_in_executor(None, bind_control_socket, self.path, self.group)
        st = os.stat(self.path)
        self._inode = (st.st_dev, st.st_ino)
        app = web.Application(middlewares=[error_middleware], client_max_size=1024 * 1024)
        self._routes(app)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()
        log.info("control socket %s", self.path)

    async def close(self) -> None:
        # A stuck subscriber would hold a graceful close for its whole timeout: end streams first.
        await self._stream.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        with contextlib.suppress(OSError):
            st = os.stat(self.path)
            if (st.st_dev, st.st_ino) == self._inode:
                self.path.unlink()

    def _routes(self, app: web.Application) -> None:
        edits = self._edits
        app.router.add_get(p.STATUS, self._status)
        app.router.add_get(p.STATS, self._stats)
        app.router.add_get(p.INFLIGHT, self._inflight)
        app.router.add_get(p.EVENTS, self._stream.handle)
        app.router.add_get(p.CONFIG, self._config)
        app.router.add_get(p.CONFIG_ENV, self._env)
        app.router.add_post(p.CONFIG_RELOAD, edits.reload)
        app.router.add_post(p.REGISTRIES, edits.add_registry)
        app.router.add_patch(p.REGISTRIES + "/{host}", edits.update_registry)
        app.router.add_delete(p.REGISTRIES + "/{host}", edits.remove_registry)
        app.router.add_put(p.CREDENTIALS, edits.set_credential)
        app.router.add_delete(p.CREDENTIALS, edits.remove_credential)
        app.router.add_get(p.CACHE_IMAGES, self._images)
        app.router.add_post(p.CACHE_PURGE, self._purge)
        app.router.add_post(p.CACHE_PIN, self._pin)
        app.router.add_post(p.CACHE_VERIFY, self._verify)
        AccessEndpoints(self.engine, edits).register(app)

    # -- read-only views -----------------------------------------------------------------------

    def event_stream_stats(self) -> p.EventStreamStats:
        return self._stream.stats()

    async def _status(self, request: web.Request) -> web.Response:
        engine = self.engine
        ca = engine.ca
        info = p.CaInfo(
            fingerprint_sha256=ca.fingerprint_sha256,
            not_after=ca.not_after.timestamp(),
            days_left=ca.days_left(),
            cert_path=str(engine.config.ca_cert_path),
        )
        body = control_views.status(
            config=engine.config,
            stats=engine.stats,
            rate_limits=engine.upstream.rate_limits(),
            started=engine.started,
            pid=os.getpid(),
            listen=engine.listen_addresses,
            ca=info,
            storage=await engine.blobs.storage(),
            fleet=engine.fleet.status() if engine.fleet is not None else None,
        )
        return json_response(body)

    async def _stats(self, request: web.Request) -> web.Response:
        usage = await self.engine.blobs.usage()
        return json_response(control_views.stats(self.engine.stats, usage, self.event_stream_stats()))

    async def _inflight(self, request: web.Request) -> web.Response:
        return json_response(control_views.inflight(self.engine.blobs.inflight(), time.monotonic()))

    async def _config(self, request: web.Request) -> web.Response:
        return json_response(control_views.config_view(self.engine.config, editable=True))

    async def _env(self, request: web.Request) -> web.Response:
        return json_response(control_views.env_view(self.engine.config))

    # -- cache actions -------------------------------------------------------------------------

    def _registry_key(self, name: str) -> str:
        registry = self.engine.config.registry_for(name)
        return registry.host if registry is not None else name

    async def _images(self, request: web.Request) -> web.Response:
        registry = request.query.get("registry") or None
        listing = await self.engine.blobs.list_images(self._registry_key(registry) if registry else None)
        return json_response(control_views.images(listing))

    async def _purge(self, request: web.Request) -> web.Response:
        wanted = p.PurgeRequest.from_json(await read_body(request))
        wanted.check()
        removed = await self.engine.blobs.purge(
            registry=self._registry_key(wanted.registry) if wanted.registry else None,
            repository=wanted.repository,
            digest=wanted.digest,
        )
        log.info("cache purge %s: %d entries removed", wanted, removed)
        return json_response(p.PurgeResult(removed=removed))

    async def _pin(self, request: web.Request) -> web.Response:
        wanted = p.PinRequest.from_json(await read_body(request))
        registry = self._registry_key(wanted.registry)
        entries = await self.engine.blobs.pin(registry, wanted.repository, wanted.pinned)
        return json_response(p.PinResult(entries=entries))

    async def _verify(self, request: web.Request) -> web.Response:
        wanted = p.VerifyRequest.from_json(await read_body(request))
        report = await self.engine.blobs.verify(repair=wanted.repair)
        return json_response(control_views.verify_result(report))
