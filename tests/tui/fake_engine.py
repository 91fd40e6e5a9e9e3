"""A tiny stand-in for the engine's control socket, replaying recorded answers (for snapshots only).

Snapshots need the same pixels every run; a real engine has a live clock, a random CA and real pulls.
This server speaks the real protocol (the same paths, JSON bodies and WebSocket frames, every payload
parsed by ``appliance.protocol`` before it is served) over a real Unix socket, from
``data/recorded.json``.  It runs on its own thread and loop because Textual's snapshot helper runs the
app with ``asyncio.run`` of its own.  Behaviour tests use the real engine instead.
"""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

from aiohttp import web

from appliance import protocol as p
from appliance.protocol import access as pa
from appliance.protocol.endpoints import ACCESS

RECORDING = Path(__file__).parent / "data" / "recorded.json"


def load_recording() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(RECORDING.read_text())
    # Refuse a recording the protocol no longer accepts, rather than snapshot nonsense.
    p.Status.from_json(data["status"])
    p.Stats.from_json(data["stats"])
    p.Inflight.from_json(data["inflight"])
    p.ConfigView.from_json(data["config"])
    p.EnvView.from_json(data["env"])
    p.ImageList.from_json(data["images"])
    pa.AccessView.from_json(data["access"])
    for event in data["events"]:
        p.EventRecord.from_json(event)
    return data


class FakeEngine:
    def __init__(self, socket_path: Path, recording: dict[str, Any] | None = None) -> None:
        self.socket_path = socket_path
        self.data = recording or load_recording()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    def _app(self) -> web.Application:
        app = web.Application()

        def answer(key: str) -> Any:
            async def handler(_request: web.Request) -> web.Response:
                return web.json_response(self.data[key])

            return handler

        app.router.add_get(p.STATUS, answer("status"))
        app.router.add_get(p.STATS, answer("stats"))
        app.router.add_get(p.INFLIGHT, answer("inflight"))
        app.router.add_get(p.CONFIG, answer("config"))
        app.router.add_get(p.CONFIG_ENV, answer("env"))
        app.router.add_get(p.CACHE_IMAGES, answer("images"))
        app.router.add_get(ACCESS, answer("access"))
        app.router.add_get(p.EVENTS, self._events)
        return app

    async def _events(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        events = self.data["events"]
        hello = p.StreamHello(api_version=p.API_VERSION, replayed=len(events), queue_size=10000)
        await ws.send_str(hello.dumps())
        await ws.send_str(json.dumps({"type": "events", "events": events, "dropped": 0}))
        async for _message in ws:  # hold the stream open until the client goes
            pass
        return ws

    def start(self) -> FakeEngine:
        self._thread = threading.Thread(target=self._serve, name="fake-engine", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fake engine did not start")
        return self

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        runner = web.AppRunner(self._app(), handle_signals=False)
        self._runner = runner
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.UnixSite(runner, str(self.socket_path)).start())
        self._ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
