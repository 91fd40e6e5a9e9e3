"""The events WebSocket: one bounded subscription per client, bursts coalesced into chunked frames.

Each subscriber gets a bounded queue on the bus, so one that stops reading loses its oldest events
and never slows the proxy; the loss is reported in every frame's ``dropped``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from aiohttp import WSMsgType, web

from appliance import protocol as p
from appliance.events import Event, EventBus, Subscription

# Frames stay small enough for any client to parse promptly, even after a long stall.
MAX_EVENTS_PER_FRAME = 500
COALESCE_SECONDS = 0.05
JSON_CACHE_SIZE = 4096  # events whose JSON is kept for the other subscribers (the bus's ring is 500)


class EventStream:
    """Serves ``bus`` to WebSocket subscribers until ``close()``."""

    def __init__(self, bus: EventBus) -> None:
        self.bus = bus
        self._streams: set[asyncio.Task[Any]] = set()
        # Keyed by id(): subscriptions are mutable dataclasses, so not hashable.
        self.subscriptions: dict[int, Subscription] = {}
        # id(event) -> (event, its JSON); the event is kept so a reused id never matches.
        self._json_cache: dict[int, tuple[Event, str]] = {}

    async def close(self) -> None:
        """End every stream (a stuck subscriber would otherwise hold a graceful close)."""
        for task in list(self._streams):
            task.cancel()
        for task in list(self._streams):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def stats(self) -> p.EventStreamStats:
        bus = self.bus
        return p.EventStreamStats(
            subscribers=len(self.subscriptions),
            dropped_total=bus.dropped_total,
            queue_size=bus.queue_size,
            replay_size=bus.replay_size,
        )

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

    async def handle(self, request: web.Request) -> web.StreamResponse:
        bus = self.bus
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


async def _until_closed(ws: web.WebSocketResponse) -> None:
    async for message in ws:
        if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.ERROR):
            return
