"""A client for the control socket, shared by the CLI and the dashboard (no Textual here).

It imports nothing from the engine but ``appliance.protocol``.  Every call returns a protocol
record or raises ``ControlError`` (the engine refused, with the protocol's error envelope) or
``EngineUnavailable`` (nothing answers on the socket: the engine is not running).  ``run_sync``
runs one call from synchronous code.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

import aiohttp

from appliance import protocol as p
from appliance.protocol import access as pa
from appliance.protocol.endpoints import ACCESS, ACCESS_ACL, ACCESS_CHECK, ACCESS_TOKENS, ACCESS_USERS

T = TypeVar("T")
P = TypeVar("P", bound=p.Payload)
# The host part of the URL is not used for routing on a Unix socket; it only fills the Host header.
BASE_URL = "http://appliance"


class ControlError(Exception):
    """The engine answered with an error envelope."""

    def __init__(self, body: p.ErrorBody, status: int) -> None:
        where = f"{body.where}: " if body.where else ""
        super().__init__(f"{where}{body.message}")
        self.body = body
        self.status = status

    @property
    def code(self) -> p.ErrorCode:
        return self.body.code


class EngineUnavailable(Exception):
    """Nothing answers on the control socket."""


class EventStream:
    """An open events subscription: ``hello`` first, then ``async for batch in stream``."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, hello: p.StreamHello) -> None:
        self.ws = ws
        self.hello = hello
        self.dropped = 0

    def __aiter__(self) -> AsyncIterator[p.EventBatch]:
        return self._batches()

    async def _batches(self) -> AsyncIterator[p.EventBatch]:
        async for message in self.ws:
            if message.type is not aiohttp.WSMsgType.TEXT:
                break
            frame = p.parse_stream_frame(message.data)
            if isinstance(frame, p.EventBatch):
                self.dropped = frame.dropped
                yield frame

    async def close(self) -> None:
        await self.ws.close()


class ControlClient:
    """``async with ControlClient(path) as client: await client.status()``."""

    def __init__(self, socket_path: Path | str, *, timeout: float = 30.0) -> None:
        self.socket_path = Path(socket_path)
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> ControlClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.UnixConnector(path=str(self.socket_path)),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=5.0),
            )
        return self._session

    def _unavailable(self, exc: BaseException) -> EngineUnavailable:
        return EngineUnavailable(
            f"no engine answers on {self.socket_path} ({type(exc).__name__}); start it with `appliance run`"
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _call(self, method: str, path: str, result: type[P], body: p.Payload | None = None) -> P:
        data = None if body is None else body.to_json()
        try:
            async with asyncio.timeout(self.timeout):
                async with self._client().request(method, BASE_URL + path, json=data) as answer:
                    text = await answer.text()
                    status = answer.status
        except (aiohttp.ClientConnectionError, FileNotFoundError, ConnectionRefusedError) as exc:
            raise self._unavailable(exc) from None
        except TimeoutError:
            raise EngineUnavailable(
                f"the engine on {self.socket_path} did not answer in {self.timeout}s"
            ) from None
        try:
            payload: Any = json.loads(text)
        except ValueError:
            raise p.ProtocolError(f"{method} {path}: answer is not JSON (HTTP {status})") from None
        if status >= 400:
            raise ControlError(p.ErrorBody.from_envelope(payload), status)
        return result.from_json(payload)

    # -- views ---------------------------------------------------------------------------------

    async def status(self) -> p.Status:
        return await self._call("GET", p.STATUS, p.Status)

    async def stats(self) -> p.Stats:
        return await self._call("GET", p.STATS, p.Stats)

    async def inflight(self) -> p.Inflight:
        return await self._call("GET", p.INFLIGHT, p.Inflight)

    async def config(self) -> p.ConfigView:
        return await self._call("GET", p.CONFIG, p.ConfigView)

    async def env(self) -> p.EnvView:
        return await self._call("GET", p.CONFIG_ENV, p.EnvView)

    # -- configuration edits -------------------------------------------------------------------

    async def add_registry(self, values: dict[str, Any]) -> p.ConfigChange:
        return await self._call("POST", p.REGISTRIES, p.ConfigChange, p.RegistryEdit(values=values))

    async def update_registry(
        self, host: str, values: dict[str, Any], unset: tuple[str, ...] = ()
    ) -> p.ConfigChange:
        path = p.registry_path(quote(host, safe=":"))
        return await self._call("PATCH", path, p.ConfigChange, p.RegistryEdit(values=values, unset=unset))

    async def remove_registry(self, host: str) -> p.ConfigChange:
        return await self._call("DELETE", p.registry_path(quote(host, safe=":")), p.ConfigChange)

    async def set_credential(self, edit: p.CredentialEdit) -> p.ConfigChange:
        return await self._call("PUT", p.CREDENTIALS, p.ConfigChange, edit)

    async def remove_credential(self, scope: str) -> p.ConfigChange:
        return await self._call("DELETE", f"{p.CREDENTIALS}?{urlencode({'scope': scope})}", p.ConfigChange)

    async def reload(self) -> p.ConfigChange:
        return await self._call("POST", p.CONFIG_RELOAD, p.ConfigChange)

    # -- access control (hashes and token digests only: the caller made them) -------------------

    async def access(self) -> pa.AccessView:
        return await self._call("GET", ACCESS, pa.AccessView)

    async def add_user(self, edit: pa.UserEdit) -> p.ConfigChange:
        return await self._call("POST", ACCESS_USERS, p.ConfigChange, edit)

    async def set_password(self, edit: pa.UserEdit) -> p.ConfigChange:
        return await self._call("PATCH", f"{ACCESS_USERS}/{quote(edit.name, safe='')}", p.ConfigChange, edit)

    async def remove_user(self, name: str) -> p.ConfigChange:
        return await self._call("DELETE", f"{ACCESS_USERS}/{quote(name, safe='')}", p.ConfigChange)

    async def add_token(self, edit: pa.TokenEdit) -> p.ConfigChange:
        return await self._call("POST", ACCESS_TOKENS, p.ConfigChange, edit)

    async def remove_token(self, token_id: str) -> p.ConfigChange:
        return await self._call("DELETE", f"{ACCESS_TOKENS}/{quote(token_id, safe='')}", p.ConfigChange)

    async def add_rule(self, edit: pa.RuleEdit) -> p.ConfigChange:
        return await self._call("POST", ACCESS_ACL, p.ConfigChange, edit)

    async def move_rule(self, index: int, position: int) -> p.ConfigChange:
        return await self._call("PATCH", f"{ACCESS_ACL}/{index}", p.ConfigChange, pa.RuleMove(position))

    async def remove_rule(self, index: int) -> p.ConfigChange:
        return await self._call("DELETE", f"{ACCESS_ACL}/{index}", p.ConfigChange)

    async def check_access(self, check: pa.AccessCheck) -> pa.AccessDecision:
        return await self._call("POST", ACCESS_CHECK, pa.AccessDecision, check)

    # -- cache ---------------------------------------------------------------------------------

    async def images(self, registry: str | None = None) -> p.ImageList:
        query = f"?{urlencode({'registry': registry})}" if registry else ""
        return await self._call("GET", p.CACHE_IMAGES + query, p.ImageList)

    async def purge(self, request: p.PurgeRequest) -> p.PurgeResult:
        return await self._call("POST", p.CACHE_PURGE, p.PurgeResult, request)

    async def pin(self, registry: str, repository: str, pinned: bool = True) -> p.PinResult:
        return await self._call("POST", p.CACHE_PIN, p.PinResult, p.PinRequest(registry, repository, pinned))

    async def verify(self, repair: bool = False) -> p.VerifyResult:
        return await self._call("POST", p.CACHE_VERIFY, p.VerifyResult, p.VerifyRequest(repair))

    # -- events --------------------------------------------------------------------------------

    async def events(self, wanted: p.EventFilter | None = None, replay: int = 0) -> EventStream:
        """Subscribe; the caller iterates the stream and closes it (``await stream.close()``)."""
        query = (wanted or p.EventFilter()).query(replay)
        url = f"{BASE_URL}{p.EVENTS}" + (f"?{query}" if query else "")
        try:
            ws = await self._client().ws_connect(url, heartbeat=30.0)
        except aiohttp.WSServerHandshakeError as exc:
            body = p.ErrorBody(p.ErrorCode.BAD_REQUEST, exc.message or "refused")
            raise ControlError(body, exc.status) from None
        except (aiohttp.ClientConnectionError, FileNotFoundError, ConnectionRefusedError) as exc:
            raise self._unavailable(exc) from None
        message = await ws.receive(timeout=self.timeout)
        if message.type is not aiohttp.WSMsgType.TEXT:
            await ws.close()
            raise EngineUnavailable(f"the event stream on {self.socket_path} closed before it started")
        frame = p.parse_stream_frame(message.data)
        if not isinstance(frame, p.StreamHello):
            await ws.close()
            raise p.ProtocolError("event stream: the first frame was not hello")
        return EventStream(ws, frame)


def run_sync(
    socket_path: Path | str, call: Callable[[ControlClient], Awaitable[T]], timeout: float = 30.0
) -> T:
    """Run one client call from synchronous code (the CLI)."""

    async def main() -> T:
        async with ControlClient(socket_path, timeout=timeout) as client:
            return await call(client)

    return asyncio.run(main())
