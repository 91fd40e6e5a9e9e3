"""The least a cache must do with a blob it has not got, done outside the appliance: a floor.

A cold pull through any cache costs, on top of serving the client, receiving every blob from the
upstream over TLS, hashing it and writing it to disk.  This module does exactly that and nothing
else: one keep-alive TLS connection opened before the clock starts, blocking reads into one 1 MiB
buffer, the digest's hash and ``write`` of each read (all three release the GIL and run in native
code), the digest checked as the appliance checks it (``appliance.digests``), and ``fsync`` once
the clock has stopped.  ``cold_pull`` runs it in its own process beside a warm pull through the
appliance: the pair is what a cold pull would cost on this machine if the cache's own overhead
were zero, so the cold figure can be read against what is achievable here.

``python -m bench.fill_floor --host H --port P --server-name N --cafile F --dir D --repository R
DIGEST...`` prints ``ready`` once connected, starts on a line on stdin, then prints ``done
SECONDS BYTES``.  ``FILL_FLOOR_AUTH=user:password`` in the environment adds Basic credentials.
Any wrong answer (status, a body cut short, digest) exits 1 with the reason on stderr.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import os
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

from appliance.digests import parse_digest
from bench.harness import ROOT
from bench.pulls import timed_pull
from tests.fixtures.images import ImageInfo
from tests.fixtures.process import FixtureError, clean_env
from tests.fixtures.registry import UpstreamRegistry

BUFFER = 1024 * 1024


class FloorError(Exception):
    """The upstream's answer was not the blob asked for."""


def fetch_blob(conn: http.client.HTTPSConnection, path: str, digest: str, fd: int, auth: str | None) -> int:
    """GET one blob on ``conn`` and write it to ``fd``, hashed and checked.  Returns its size."""
    expected = parse_digest(digest)
    conn.request("GET", path, headers={"Authorization": f"Basic {auth}"} if auth else {})
    response = conn.getresponse()
    if response.status != 200:
        response.read()
        raise FloorError(f"{path}: answered {response.status}")
    hasher = expected.hasher()
    view = memoryview(bytearray(BUFFER))
    while n := response.readinto(view):
        hasher.update(view[:n])
        os.write(fd, view[:n])
    if response.length:  # http.client's readinto ends quietly when the body stops short
        raise FloorError(f"{path}: cut off at {hasher.length} of {hasher.length + response.length} bytes")
    if not hasher.matches(expected):
        raise FloorError(f"{digest}: the bytes hash to {hasher.digest()}")
    return hasher.length


def fetch_all(
    conn: http.client.HTTPSConnection, args: argparse.Namespace, auth: str | None
) -> tuple[float, int]:
    """Every blob, one file each; seconds until the last one was checked, and the bytes fetched.

    The files are synced after the clock stops, as the appliance lets readers finish before its
    commit (fsync, rename) of a verified blob: the work is still done, beside whatever still runs.
    """
    started = time.monotonic()
    total = 0
    fds: list[int] = []
    try:
        for number, digest in enumerate(args.digests):
            fds.append(
                os.open(args.dir / f"floor-blob-{number}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            )
            path = f"/v2/{args.repository}/blobs/{digest}"
            total += fetch_blob(conn, path, digest, fds[-1], auth)
        elapsed = time.monotonic() - started
        for fd in fds:
            os.fsync(fd)
    finally:
        for number, fd in enumerate(fds):
            os.close(fd)
            (args.dir / f"floor-blob-{number}").unlink(missing_ok=True)
    return elapsed, total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fill_floor", description=__doc__)
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--server-name", required=True)
    parser.add_argument("--cafile", required=True)
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--repository", required=True)
    parser.add_argument("digests", nargs="+")
    args = parser.parse_args(argv)
    creds = os.environ.get("FILL_FLOOR_AUTH")
    auth = base64.b64encode(creds.encode()).decode() if creds else None
    context = ssl.create_default_context(cafile=args.cafile)
    # Named for SNI and Host, connected to the address given (the made-up name does not resolve).
    conn = http.client.HTTPSConnection(args.server_name, args.port, context=context, timeout=60)
    try:
        raw = socket.create_connection((args.host, args.port), timeout=60)
        conn.sock = context.wrap_socket(raw, server_hostname=args.server_name)
        print("ready", flush=True)
        sys.stdin.readline()
        elapsed, total = fetch_all(conn, args, auth)
        print(f"done {elapsed:.6f} {total}", flush=True)
    except (FloorError, OSError, ValueError, http.client.HTTPException) as exc:
        # http.client's errors say what happened in their type (IncompleteRead, RemoteDisconnected).
        print(f"fill floor: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        conn.close()
    return 0


class FloorFill:
    """One ``fill_floor`` process, connected and waiting: ``go()`` starts it, ``finish()`` waits."""

    def __init__(
        self,
        address: tuple[str, int],
        server_name: str,
        cafile: Path,
        scratch: Path,
        repository: str,
        digests: list[str],
        creds: tuple[str, str] | None = None,
    ) -> None:
        env = clean_env({"FILL_FLOOR_AUTH": f"{creds[0]}:{creds[1]}"} if creds else {})
        host, port = address
        command = [sys.executable, "-m", "bench.fill_floor", "--host", host, "--port", str(port)]
        command += ["--server-name", server_name, "--cafile", str(cafile), "--dir", str(scratch)]
        command += ["--repository", repository, *digests]
        self._proc = subprocess.Popen(
            command,
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline().strip()
        if line != "ready":
            self._fail(f"did not connect: {line!r}")

    def go(self) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.write("go\n")
        self._proc.stdin.flush()

    def finish(self, timeout: float = 600) -> tuple[float, int]:
        """Seconds from ``go()`` until everything was fetched and checked, and the bytes fetched."""
        try:
            out, err = self._proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.communicate()
            raise FixtureError(f"fill floor took longer than {timeout} s") from None
        if self._proc.returncode != 0:
            raise FixtureError(f"fill floor exited with {self._proc.returncode}: {err.strip()}")
        words = out.split()
        if len(words) != 3 or words[0] != "done":
            raise FixtureError(f"fill floor: unexpected output {out!r}: {err.strip()}")
        return float(words[1]), int(words[2])

    def close(self) -> None:
        """Stop the process if it is still running (the pull beside it failed)."""
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.communicate()

    def _fail(self, what: str) -> None:
        """Before ``finish``: stop the process and raise with what it said."""
        if self._proc.poll() is None:
            self._proc.kill()
        _, err = self._proc.communicate()
        raise FixtureError(f"fill floor {what}: {err.strip()}")


def floor_pull(
    image: ImageInfo,
    upstream: UpstreamRegistry,
    scratch: Path,
    *,
    cert_dir: Path,
    https_proxy: str,
    fill_seconds: list[float] | None = None,
) -> float:
    """A warm pull of ``image`` through the proxy with a bare fill of its blobs alongside.

    The later of the two ends counts: a cold pull cannot finish before its fill has the last byte.
    The fill's own time is appended to ``fill_seconds``.
    """
    if upstream.ca_file is None:
        raise FixtureError("the fill floor needs a TLS upstream")
    fill = FloorFill(
        upstream.address,
        upstream.name_port.partition(":")[0],
        upstream.ca_file,
        scratch,
        image.repository,
        [image.config_digest, *image.layer_digests],
        upstream.creds,
    )
    try:
        fill.go()
        pulled = timed_pull(
            image.reference(upstream.name_port), scratch, cert_dir=cert_dir, https_proxy=https_proxy
        )
        filled, _ = fill.finish()
    finally:
        fill.close()
    if fill_seconds is not None:
        fill_seconds.append(filled)
    return max(pulled, filled)


if __name__ == "__main__":
    sys.exit(main())
