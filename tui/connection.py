"""The dashboard's one link to the engine (no Textual): polls, follows events, reconnects by itself.

``EngineLink.run()`` loops forever: connect (status + config), subscribe to events, then poll
status/stats/in-flight every ``poll_interval`` while the stream runs.  When anything says the engine
is gone (``EngineUnavailable``, the stream closing), it tells the sink, waits ``retry_interval`` and
starts again with a fresh client (a restarted engine would not know the old keep-alive
connections).  A reconnect to the *same* engine (same pid and start time) asks for no replay, so rows
are not shown twice; a new engine replays its recent events.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Protocol

from appliance import protocol as p
from appliance.control.client import ControlClient, ControlError, EngineUnavailable, EventStream


class LinkSink(Protocol):
    """Who hears what the link learns (the app, which turns it into messages)."""

    def link_connected(self, status: p.Status, config: p.ConfigView, same_engine: bool) -> None: ...

    def link_disconnected(self, reason: str, attempt: int) -> None: ...

    def link_status(self, status: p.Status) -> None: ...

    def link_stats(self, stats: p.Stats) -> None: ...

    def link_inflight(self, inflight: p.Inflight) -> None: ...

    def link_events(self, batch: p.EventBatch) -> None: ...


class NotConnected(Exception):
    """An action was asked for while no engine answers."""


class _StreamEnded(Exception):
    pass


class EngineLink:
    def __init__(
        self,
        socket_path: Path,
        sink: LinkSink,
        *,
        poll_interval: float = 1.0,
        retry_interval: float = 1.0,
        replay: int = 200,
        timeout: float = 5.0,
    ) -> None:
        self.socket_path = socket_path
        self._sink = sink
        self.poll_interval = poll_interval
        self.retry_interval = retry_interval
        self.replay = replay
        self.timeout = timeout
        self._client: ControlClient | None = None
        self._engine: tuple[int, float] | None = None
        self.connected = False

    @property
    def client(self) -> ControlClient:
        """The live client, for actions (edits, purges); raises ``NotConnected`` while the engine is away."""
        if self._client is None or not self.connected:
            raise NotConnected(f"not connected to the engine on {self.socket_path}")
        return self._client

    async def run(self) -> None:
        attempt = 0
        while True:
            try:
                await self._session()
                reason = "the engine closed the event stream"
            except EngineUnavailable as exc:
                reason = str(exc)
            except (p.ProtocolError, ControlError) as exc:
                reason = f"the engine answered unexpectedly: {exc}"
            finally:
                self.connected = False
                await self.close()
            attempt += 1
            self._sink.link_disconnected(reason, attempt)
            await asyncio.sleep(self.retry_interval)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def _session(self) -> None:
        client = ControlClient(self.socket_path, timeout=self.timeout)
        self._client = client
        status = await client.status()
        config = await client.config()
        engine = (status.pid, status.started)
        same = engine == self._engine
        self._engine = engine
        stream = await client.events(replay=0 if same else self.replay)
        try:
            self.connected = True
            self._sink.link_connected(status, config, same)
            await self._follow(client, stream)
        finally:
            with contextlib.suppress(Exception):
                await stream.close()

    async def _follow(self, client: ControlClient, stream: EventStream) -> None:
        tasks = {
            asyncio.create_task(self._poll(client), name="tui-poll"),
            asyncio.create_task(self._stream(stream), name="tui-events"),
        }
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            error = task.exception()
            if isinstance(error, _StreamEnded):
                return
            if error is not None:
                raise error

    async def _stream(self, stream: EventStream) -> None:
        try:
            async for batch in stream:
                self._sink.link_events(batch)
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            raise EngineUnavailable(f"event stream lost: {type(exc).__name__}") from None
        raise _StreamEnded

    async def _poll(self, client: ControlClient) -> None:
        while True:
            try:
                self._sink.link_stats(await client.stats())
                self._sink.link_inflight(await client.inflight())
                self._sink.link_status(await client.status())
            except ControlError:
                pass  # the engine is there but busy (503): try again next round
            await asyncio.sleep(self.poll_interval)
