"""The benchmarks' delayed TCP forwarder: every byte arrives late by its delay, in order, intact."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Iterator

import pytest

from bench.latency import DelayedForwarder


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


@pytest.fixture
def echo_port() -> Iterator[int]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _round_trip(port: int, payload: bytes) -> tuple[float, float, bytes]:
    """Seconds to connect and to get ``payload`` echoed back, and what came back."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(b"x")  # the far side is reached only after the forwarder's own connect
        assert conn.recv(1) == b"x"
        connected = time.monotonic()
        conn.sendall(payload)
        got = b""
        while len(got) < len(payload):
            chunk = conn.recv(1 << 20)
            assert chunk, "connection closed early"
            got += chunk
        return connected - started, time.monotonic() - connected, got


def test_a_round_trip_through_the_forwarder_takes_twice_its_delay(echo_port: int) -> None:
    with DelayedForwarder(("127.0.0.1", echo_port), 0.05) as forwarder:
        first, second, _ = _round_trip(forwarder.port, b"ping")
    # Connecting to the far side is a round trip, then the first byte's own round trip.
    assert first >= 0.2 and second >= 0.1, (first, second)
    assert first < 2 and second < 1


def test_bytes_come_through_in_order_and_intact(echo_port: int) -> None:
    payload = bytes(range(256)) * 20_000  # 5 MB, many reads in each direction
    with DelayedForwarder(("127.0.0.1", echo_port), 0.002) as forwarder:
        _, _, got = _round_trip(forwarder.port, payload)
        assert forwarder.connections == 1
    assert got == payload


def test_a_negative_delay_is_refused() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        DelayedForwarder(("127.0.0.1", 1), -1)
