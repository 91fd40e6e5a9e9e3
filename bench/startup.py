"""6. Start-up: from spawning ``appliance run`` to the first cache hit served, with N index entries.

The cache is populated offline the way the cache itself lays it out (``FileBlobStore`` paths, rows
in the SQLite index created by ``CacheIndex``), then the appliance is started and one of the entries
is fetched in mirror mode until it answers.  Compared with the same start on a one-entry cache.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from appliance.cache import INDEX_FILE
from appliance.cache.blobstore import BlobKey, Kind
from appliance.cache.filestore import FileBlobStore
from appliance.cache.index import CacheIndex
from bench.harness import Context, Metric, Target, interleave, median
from bench.peers import appliance_for
from tests.fixtures.appliance import APPLIANCE, ROOT, Appliance
from tests.fixtures.process import FixtureError, clean_env

NAME = "startup"
REPOSITORY = "bench/startup"
_TIMEOUT = 60.0


def populate(cache_dir: Path, registry: str, entries: int) -> tuple[str, bytes]:
    """Write ``entries`` small blobs and their index rows; returns one (digest, bytes) to fetch."""
    asyncio.run(_create_schema(cache_dir / INDEX_FILE))
    store = FileBlobStore(cache_dir)
    now = time.time()
    rows = []
    refs = []
    made: set[Path] = set()
    first: tuple[str, bytes] | None = None
    for i in range(entries):
        data = f"startup entry {i}\n".encode() * 4
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        path = store.path_for(BlobKey.of(registry, Kind.BLOB, digest))
        if path.parent not in made:
            path.parent.mkdir(parents=True, exist_ok=True)
            made.add(path.parent)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        rows.append((registry, Kind.BLOB.value, digest, len(data), None, now - i, now - i, 0, "ready"))
        refs.append((registry, REPOSITORY, digest))
        if first is None or i == entries // 2:
            first = (digest, data)
    db = sqlite3.connect(cache_dir / INDEX_FILE)
    try:
        with db:
            db.executemany("INSERT OR REPLACE INTO blobs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            db.executemany("INSERT OR IGNORE INTO refs VALUES (?, ?, ?)", refs)
            # As pulls leave them: the repository's manifests linked it to these blobs.
            db.executemany("INSERT OR IGNORE INTO links VALUES (?, ?, ?)", refs)
    finally:
        db.close()
    assert first is not None
    return first


async def _create_schema(path: Path) -> None:
    index = CacheIndex(path)
    await index.open()
    await index.close()


def time_to_first_hit(appliance: Appliance, url: str, expected: bytes) -> float:
    """Seconds from spawning the process to the first successful answer for ``url``."""
    env = clean_env({"PYTHONUNBUFFERED": "1"}, drop_prefixes=("AUTH_REGISTR", "REGISTRIES"))
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with appliance.log_path.open("ab") as log:
        started = time.perf_counter()
        appliance.process = subprocess.Popen(
            [*APPLIANCE, "run", "--config", str(appliance.config_path)],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    try:
        while time.perf_counter() - started < _TIMEOUT:
            try:
                with opener.open(url, timeout=5) as answer:
                    body = answer.read()
                elapsed = time.perf_counter() - started
                if body != expected:
                    raise FixtureError(f"first hit served {len(body)} unexpected bytes")
                return elapsed
            except urllib.error.HTTPError as exc:
                raise FixtureError(f"first hit answered {exc.code}: {appliance.log_text()[-2000:]}") from None
            except OSError:
                if appliance.process.poll() is not None:
                    raise FixtureError(f"appliance exited: {appliance.log_text()[-2000:]}") from None
                time.sleep(0.005)
        raise FixtureError(f"no hit within {_TIMEOUT}s")
    finally:
        appliance.stop()


def run(ctx: Context) -> list[Metric]:
    lab = ctx.lab()
    upstream = lab.upstream
    scratch = ctx.scratch(NAME)
    setups: dict[str, tuple[Appliance, str, bytes]] = {}
    populate_seconds = 0.0
    for label, entries in (("one", 1), ("many", ctx.profile.index_entries)):
        appliance = appliance_for(scratch / label, lab.pki, upstream)
        started = time.perf_counter()
        digest, data = populate(appliance.cache_dir, upstream.name_port, entries)
        if label == "many":
            populate_seconds = time.perf_counter() - started
        url = f"{appliance.url}/v2/{REPOSITORY}/blobs/{digest}?ns={upstream.name_port}"
        setups[label] = (appliance, url, data)
    # One start each first: the CA is generated on the first start, which is not what is measured.
    for appliance, url, data in setups.values():
        time_to_first_hit(appliance, url, data)
    times = interleave(
        {label: functools.partial(time_to_first_hit, *setup) for label, setup in setups.items()},
        max(ctx.profile.runs, 1),
    )
    med = {label: median(values) for label, values in times.items()}
    ctx.log(
        f"  start-up to first hit: 1 entry {med['one']:.3f}s,"
        f" {ctx.profile.index_entries} entries {med['many']:.3f}s"
    )
    detail = {"entries": ctx.profile.index_entries, "seconds": times, "populate_seconds": populate_seconds}
    return [
        Metric(
            NAME,
            f"first hit with {ctx.profile.index_entries} entries",
            med["many"],
            "s",
            Target("<=", 1.0, "<= 1 s"),
            detail,
        ),
        Metric(NAME, f"{ctx.profile.index_entries} entries / 1 entry", med["many"] / med["one"], "x"),
    ]
