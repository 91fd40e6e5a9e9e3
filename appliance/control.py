"""The control socket: the versioned JSON API (``appliance.protocol``) on a Unix socket, via aiohttp.

The socket is created 0600 (0660 with a configured group) before it listens, so no other user can
ever connect.  A stale socket file left by a crashed run is replaced; one a live engine still
answers on is left alone and start-up fails with a clear error.

Configuration edits go through ``config_file`` (comments kept, whole document validated, atomic
write), then the full configuration is rebuilt from the same sources the engine started with
(``ConfigSource``: file < seed env vars < flags) and swapped into the running engine.  Edits are
serialised by one lock; the event stream gives each subscriber a bounded queue, so a subscriber that
stops reading loses its oldest events and never slows the proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import grp
import json
import logging
import os
import socket
import stat
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import WSMsgType, web

from appliance import config_file, control_views
from appliance import protocol as p
from appliance.config import Config, Secret, SecretStore
from appliance.config_load import LoadResult, Overrides, find_config_path, load_config
from appliance.config_values import default_config_path
from appliance.errors import ApplianceError, ConfigError
from appliance.events import Event, Subscription

if TYPE_CHECKING:
    from appliance.engine import Engine

log = logging.getLogger("appliance.control")

T = TypeVar("T")
# Frames stay small enough for any client to parse promptly, even after a long stall.
MAX_EVENTS_PER_FRAME = 500
COALESCE_SECONDS = 0.05
JSON_CACHE_SIZE = 4096  # events whose JSON is kept for the other subscribers (the bus's ring is 500)


class ControlSocketError(ApplianceError):
    """The control socket cannot be created (in use by a live engine, not a socket, path too long)."""


class Refused(ApplianceError):
    """A request the control API answers with an error envelope."""

    def __init__(self, code: p.ErrorCode, message: str, where: str = "") -> None:
        super().__init__(message)
        self.body = p.ErrorBody(code, message, where)


@dataclass(frozen=True, slots=True)
class ConfigSource:
    """How the running configuration was built, so a hot reload builds it the same way."""

    overrides: Overrides = field(default_factory=Overrides)
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    config_path: Path | None = None  # ``--config``; None: found as at start-up
    use_env: bool = True

    def load(self) -> LoadResult:
        return load_config(self.overrides, self.environ, self.config_path, use_env=self.use_env)

    def edit_path(self, running: Config) -> Path:
        """The TOML file edits go to: the one in use, else the default one (created on first edit)."""
        return (
            self.config_path
            or running.config_path
            or find_config_path(None, self.environ)
            or default_config_path(self.environ)
        )


# --- the socket ----------------------------------------------------------------------------------


def _alive(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        return False
    except OSError:
        # Permission denied, timeout: someone holds it; stealing it could cut off a live engine.
        return True
    finally:
        probe.close()
    return True


def bind_control_socket(path: Path, group: str | None = None) -> socket.socket:
    """A listening Unix socket at ``path``, mode 0600 (0660 and chgrp with ``group``)."""
    if len(os.fsencode(path)) > 100:
        raise ControlSocketError(f"control socket {path}: path too long for a Unix socket (max ~100 bytes)")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None:
        if not stat.S_ISSOCK(st.st_mode):
            raise ControlSocketError(f"control socket {path}: a file that is not a socket is in the way")
        if _alive(path):
            raise ControlSocketError(
                f"control socket {path} is in use by a running appliance; stop it first or use another"
                " --control-socket"
            )
        log.info("replacing stale control socket %s", path)
        path.unlink()
    gid = None
    if group:
        try:
            gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
        except KeyError:
            raise ControlSocketError(f"control socket group {group!r}: no such group") from None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # The umask makes the socket private from the moment it exists, not only after a chmod.
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
    except OSError as exc:
        sock.close()
        raise ControlSocketError(f"control socket {path}: {exc.strerror or exc}") from None
    finally:
        os.umask(old)
    if gid is not None:
        os.chown(path, -1, gid)
        os.chmod(path, 0o660)
    else:
        os.chmod(path, 0o600)
    sock.listen(64)
    sock.setblocking(False)
    return sock


# --- the server ----------------------------------------------------------------------------------


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
        self._edit_lock = asyncio.Lock()
        self._streams: set[asyncio.Task[Any]] = set()
        # Keyed by id(): subscriptions are mutable dataclasses, so not hashable.
        self.subscriptions: dict[int, Subscription] = {}
        # id(event) -> (event, its JSON); the event is kept so a reused id never matches.
        self._json_cache: dict[int, tuple[Event, str]] = {}

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        sock = await loop.run_in_executor(None, bind_control_socket, self.path, self.group)
        st = os.stat(self.path)
        self._inode = (st.st_dev, st.st_ino)
        app = web.Application(middlewares=[_error_middleware], client_max_size=1024 * 1024)
        self._routes(app)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()
        log.info("control socket %s", self.path)

    async def close(self) -> None:
        # A stuck subscriber would hold a graceful close for its whole timeout: end streams first.
        for task in list(self._streams):
            task.cancel()
        for task in list(self._streams):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        with contextlib.suppress(OSError):
            st = os.stat(self.path)
            if (st.st_dev, st.st_ino) == self._inode:
                self.path.unlink()

    def _routes(self, app: web.Application) -> None:
        app.router.add_get(p.STATUS, self._status)
        app.router.add_get(p.STATS, self._stats)
        app.router.add_get(p.INFLIGHT, self._inflight)
        app.router.add_get(p.EVENTS, self._events)
        app.router.add_get(p.CONFIG, self._config)
        app.router.add_get(p.CONFIG_ENV, self._env)
        app.router.add_post(p.CONFIG_RELOAD, self._reload)
        app.router.add_post(p.REGISTRIES, self._add_registry)
        app.router.add_patch(p.REGISTRIES + "/{host}", self._update_registry)
        app.router.add_delete(p.REGISTRIES + "/{host}", self._remove_registry)
        app.router.add_put(p.CREDENTIALS, self._set_credential)
        app.router.add_delete(p.CREDENTIALS, self._remove_credential)
        app.router.add_get(p.CACHE_IMAGES, self._images)
        app.router.add_post(p.CACHE_PURGE, self._purge)
        app.router.add_post(p.CACHE_PIN, self._pin)
        app.router.add_post(p.CACHE_VERIFY, self._verify)

    # -- read-only views -----------------------------------------------------------------------

    def event_stream_stats(self) -> p.EventStreamStats:
        bus = self.engine.events
        return p.EventStreamStats(
            subscribers=len(self.subscriptions),
            dropped_total=bus.dropped_total,
            queue_size=bus.queue_size,
            replay_size=bus.replay_size,
        )

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
            rate_limits=engine.rate_limits(),
            started=engine.started,
            pid=os.getpid(),
            listen=engine.listen_addresses,
            ca=info,
        )
        return _json(body)

    async def _stats(self, request: web.Request) -> web.Response:
        usage = await self.engine.blobs.usage()
        return _json(control_views.stats(self.engine.stats, usage, self.event_stream_stats()))

    async def _inflight(self, request: web.Request) -> web.Response:
        return _json(control_views.inflight(self.engine.blobs.inflight(), time.monotonic()))

    async def _config(self, request: web.Request) -> web.Response:
        return _json(control_views.config_view(self.engine.config, editable=True))

    async def _env(self, request: web.Request) -> web.Response:
        return _json(control_views.env_view(self.engine.config))

    # -- the event stream ----------------------------------------------------------------------

    def _event_json(self, event: Event) -> str:
        """An event's JSON, computed once however many subscribers send it."""
        key = id(event)
        cached = self._json_cache.get(key)
        if cached is not None and cached[0] is event:
            return cached[1]
        text = json.dumps(event.to_dict(), separators=(",", ":"))
        if len(self._json_cache) >= JSON_CACHE_SIZE:
            self._json_cache.pop(next(iter(self._json_cache)))
        self._json_cache[key] = (event, text)
        return text

    async def _events(self, request: web.Request) -> web.StreamResponse:
        bus = self.engine.events
        wanted = p.EventFilter.from_query(request.query)
        replay = p.replay_param(request.query, bus.replay_size)
        ws = web.WebSocketResponse(heartbeat=30.0)
        await ws.prepare(request)
        predicate = None
        if wanted != p.EventFilter():

            def predicate(event: Event) -> bool:
                return wanted.matches_fields(event.registry, event.status, event.kind)

        sub = bus.subscribe(predicate, replay)
        self.subscriptions[id(sub)] = sub
        task = asyncio.current_task()
        if task is not None:
            self._streams.add(task)
        hello = p.StreamHello(
            api_version=p.API_VERSION, replayed=len(sub.queue), queue_size=bus.queue_size, filter=wanted
        )
        closed = asyncio.ensure_future(_until_closed(ws))
        try:
            await ws.send_str(hello.dumps())
            while not ws.closed:
                batch = asyncio.ensure_future(sub.next_batch())
                done, _ = await asyncio.wait({batch, closed}, return_when=asyncio.FIRST_COMPLETED)
                if batch not in done:
                    batch.cancel()
                    break
                events = batch.result()
                # Let a burst gather: one frame per 50 ms instead of one per request keeps the cost
                # of a subscriber per batch, not per proxied request.
                await asyncio.sleep(COALESCE_SECONDS)
                events.extend(sub.queue)
                sub.queue.clear()
                for start in range(0, len(events), MAX_EVENTS_PER_FRAME):
                    chunk = events[start : start + MAX_EVENTS_PER_FRAME]
                    body = ",".join(self._event_json(e) for e in chunk)
                    await ws.send_str(f'{{"type":"events","events":[{body}],"dropped":{sub.dropped}}}')
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            bus.unsubscribe(sub)
            self.subscriptions.pop(id(sub), None)
            if task is not None:
                self._streams.discard(task)
            closed.cancel()
            if not ws.closed:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ws.close(), 1.0)
        return ws

    # -- configuration edits -------------------------------------------------------------------

    async def _edit(self, what: str, change: Callable[[Path], Config]) -> web.Response:
        async with self._edit_lock:
            path = self.source.edit_path(self.engine.config)
            loop = asyncio.get_running_loop()
            from_file = await loop.run_in_executor(None, change, path)
            result = await self._apply(f"{what}; written to {path}", path)
            warnings = list(result.warnings)
            running = self.engine.config
            if from_file.registries != running.registries:
                warnings.append("the REGISTRIES env var or a flag overrides the file's registries")
            if from_file.credentials != running.credentials:
                warnings.append("AUTH_REGISTRIES overrides the file's credentials")
            return _json(dataclasses.replace(result, warnings=tuple(warnings)))

    async def _apply(self, message: str, path: Path) -> p.ConfigChange:
        loop = asyncio.get_running_loop()
        try:
            loaded = await loop.run_in_executor(None, self.source.load)
        except ConfigError as exc:
            # The file was written and is valid on its own, but the env vars or flags on top reject
            # it: keep running the previous configuration and say so.
            return p.ConfigChange(
                config_path=str(path),
                applied=False,
                message=f"{message}; not applied: {exc}",
            )
        pending = self.engine.reload(loaded.config)
        log.info("configuration reloaded: %s", message)
        return p.ConfigChange(
            config_path=str(path),
            applied=True,
            message=message,
            warnings=loaded.warnings,
            restart_required=pending,
        )

    async def _reload(self, request: web.Request) -> web.Response:
        async with self._edit_lock:
            path = self.source.edit_path(self.engine.config)
            loop = asyncio.get_running_loop()
            loaded = await loop.run_in_executor(None, self.source.load)
            pending = self.engine.reload(loaded.config)
            return _json(
                p.ConfigChange(
                    config_path=str(path),
                    applied=True,
                    message="configuration reloaded",
                    warnings=loaded.warnings,
                    restart_required=pending,
                )
            )

    async def _add_registry(self, request: web.Request) -> web.Response:
        edit = p.RegistryEdit.from_json(await _body(request))
        if edit.unset:
            raise Refused(p.ErrorCode.BAD_REQUEST, "unset makes no sense when adding a registry", "unset")
        env = self.source.environ
        host = str(edit.values.get("host", ""))
        return await self._edit(
            f"registry {host} added", lambda path: config_file.add_registry(path, edit.values, env)
        )

    async def _update_registry(self, request: web.Request) -> web.Response:
        host = request.match_info["host"]
        edit = p.RegistryEdit.from_json(await _body(request))
        changes: dict[str, Any] = {**edit.values, **{key: None for key in edit.unset}}
        if "host" in changes and changes["host"] != host:
            raise Refused(p.ErrorCode.BAD_REQUEST, "a registry's host cannot change; add a new one", "host")
        env = self.source.environ
        return await self._edit(
            f"registry {host} changed", lambda path: config_file.update_registry(path, host, changes, env)
        )

    async def _remove_registry(self, request: web.Request) -> web.Response:
        host = request.match_info["host"]
        env = self.source.environ
        return await self._edit(
            f"registry {host} removed", lambda path: config_file.remove_registry(path, host, env)
        )

    async def _set_credential(self, request: web.Request) -> web.Response:
        edit = p.CredentialEdit.from_json(await _body(request))
        env = self.source.environ
        password = Secret(edit.password) if edit.password is not None else None

        def change(path: Path) -> Config:
            return config_file.set_credential(
                path,
                edit.scope,
                edit.username,
                password=password,
                store=SecretStore(edit.store.value),
                reference=edit.reference,
                environ=env,
            )

        return await self._edit(f"credential for {edit.scope} set ({edit.store})", change)

    async def _remove_credential(self, request: web.Request) -> web.Response:
        scope = request.query.get("scope", "")
        if not scope:
            raise Refused(p.ErrorCode.BAD_REQUEST, "the scope query parameter is required", "scope")
        env = self.source.environ
        return await self._edit(
            f"credential for {scope} removed", lambda path: config_file.remove_credential(path, scope, env)
        )

    # -- cache actions -------------------------------------------------------------------------

    def _registry_key(self, name: str) -> str:
        registry = self.engine.config.registry_for(name)
        return registry.host if registry is not None else name

    async def _images(self, request: web.Request) -> web.Response:
        registry = request.query.get("registry") or None
        listing = await self.engine.blobs.list_images(self._registry_key(registry) if registry else None)
        return _json(control_views.images(listing))

    async def _purge(self, request: web.Request) -> web.Response:
        wanted = p.PurgeRequest.from_json(await _body(request))
        wanted.check()
        removed = await self.engine.blobs.purge(
            registry=self._registry_key(wanted.registry) if wanted.registry else None,
            repository=wanted.repository,
            digest=wanted.digest,
        )
        log.info("cache purge %s: %d entries removed", wanted, removed)
        return _json(p.PurgeResult(removed=removed))

    async def _pin(self, request: web.Request) -> web.Response:
        wanted = p.PinRequest.from_json(await _body(request))
        registry = self._registry_key(wanted.registry)
        entries = await self.engine.blobs.pin(registry, wanted.repository, wanted.pinned)
        return _json(p.PinResult(entries=entries))

    async def _verify(self, request: web.Request) -> web.Response:
        wanted = p.VerifyRequest.from_json(await _body(request))
        report = await self.engine.blobs.verify(repair=wanted.repair)
        return _json(control_views.verify_result(report))


# --- helpers -------------------------------------------------------------------------------------


async def _until_closed(ws: web.WebSocketResponse) -> None:
    async for message in ws:
        if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.ERROR):
            return


async def _body(request: web.Request) -> object:
    try:
        return await request.json()
    except ValueError as exc:
        raise Refused(p.ErrorCode.BAD_REQUEST, f"request body is not JSON: {exc}") from None


def _json(payload: p.Payload, status: int = 200) -> web.Response:
    return web.Response(text=payload.dumps(), status=status, content_type="application/json")


def _error(body: p.ErrorBody) -> web.Response:
    return web.Response(
        text=json.dumps(body.envelope(), separators=(",", ":")),
        status=body.http_status,
        content_type="application/json",
    )


@web.middleware
async def _error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every failure leaves as the protocol's error envelope, never as a traceback or HTML."""
    try:
        return await handler(request)
    except Refused as exc:
        return _error(exc.body)
    except p.ProtocolError as exc:
        return _error(p.ErrorBody(p.ErrorCode.BAD_REQUEST, str(exc)))
    except ConfigError as exc:
        return _error(p.ErrorBody(p.ErrorCode.INVALID_CONFIG, exc.message, exc.where))
    except web.HTTPException as exc:
        code = p.ErrorCode.NOT_FOUND if exc.status == 404 else p.ErrorCode.BAD_REQUEST
        if exc.status >= 500:
            code = p.ErrorCode.INTERNAL
        return _error(p.ErrorBody(code, f"{request.method} {request.path}: {exc.reason}"))
    except OSError as exc:
        log.warning("control %s %s failed: %s", request.method, request.path, exc)
        return _error(p.ErrorBody(p.ErrorCode.INTERNAL, f"{type(exc).__name__}: {exc.strerror or exc}"))
    except ApplianceError as exc:
        return _error(p.ErrorBody(p.ErrorCode.INTERNAL, str(exc)))


__all__ = [
    "ConfigSource",
    "ControlServer",
    "ControlSocketError",
    "bind_control_socket",
]
