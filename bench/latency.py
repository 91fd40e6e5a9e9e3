"""A TCP forwarder that puts a registry "far away": every byte arrives ``delay`` seconds late.

Registries users pull from are tens of milliseconds away, and on loopback they are not; this adds
the distance back.  Each direction of each connection is a queue of (due time, bytes): bytes go
on in the order they came, ``delay`` after they were read, so a round trip (TCP, TLS handshake,
request) costs ``2 * delay`` as it would across a network.  Bandwidth is not limited.

It runs its own event loop on a thread, like the test suite's misbehaving upstream, so the bench
process keeps its blocking subprocess calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from concurrent.futures import Future

_READ = 256 * 1024
# Bytes read but not yet due, per direction: reading pauses above it, so a fast sender is held
# back by TCP as it would be by a long, thin pipe, instead of filling memory.
_IN_FLIGHT = 16 * 1024 * 1024


class DelayedForwarder:
    """``127.0.0.1:port`` forwards to ``target`` (host, port), ``delay`` seconds each way."""

    def __init__(self, target: tuple[str, int], delay: float) -> None:
        if delay < 0:
            raise ValueError(f"delay must not be negative, got {delay}")
        self.target = target
        self.delay = delay
        self.port = 0
        self.connections = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping: asyncio.Event | None = None

    def start(self) -> None:
        started: Future[int] = Future()
        self._thread = threading.Thread(
            target=self._run, args=(started,), name="delayed-forwarder", daemon=True
        )
        self._thread.start()
        self.port = started.result(timeout=10)

    def stop(self) -> None:
        loop, thread, stopping = self._loop, self._thread, self._stopping
        if loop is None or thread is None or stopping is None:
            return
        loop.call_soon_threadsafe(stopping.set)
        thread.join(10)
        self._loop = self._thread = self._stopping = None

    def _run(self, started: Future[int]) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve(started))
        finally:
            loop.close()

    async def _serve(self, started: Future[int]) -> None:
        try:
            server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        except OSError as exc:
            started.set_exception(exc)
            return
        self._stopping = asyncio.Event()
        started.set_result(server.sockets[0].getsockname()[1])
        async with server:
            await self._stopping.wait()
        # Connections still open end with the forwarder, each closing its two sockets.
        current = asyncio.current_task()
        connections = [task for task in asyncio.all_tasks() if task is not current]
        for task in connections:
            task.cancel()
        await asyncio.gather(*connections, return_exceptions=True)

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            # The connection to the far side is delayed too: a TCP handshake is one round trip.
            await asyncio.sleep(2 * self.delay)
            server_r, server_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.close()
            return
        try:
            await asyncio.gather(self._pump(client_r, server_w), self._pump(server_r, client_w))
        finally:
            for writer in (client_w, server_w):
                writer.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        room = asyncio.Semaphore(max(1, _IN_FLIGHT // _READ))

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:  # the sender closed its side: so does the far end, as late
                    with contextlib.suppress(OSError):
                        writer.write_eof()
                    return
                writer.write(data)
                room.release()
                await writer.drain()

        delivering = asyncio.ensure_future(deliver())
        try:
            while True:
                await room.acquire()
                data = await reader.read(_READ)
                queue.put_nowait((loop.time() + self.delay, data))
                if not data:
                    break
            await delivering
        except (ConnectionError, OSError):
            delivering.cancel()
        finally:
            if not delivering.done():
                await asyncio.wait({delivering})

    def __enter__(self) -> DelayedForwarder:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
