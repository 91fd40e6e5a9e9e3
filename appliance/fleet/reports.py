"""A replica's access report: digest -> when it last served it, flushed to ``reports/<replica_id>.json``.

The janitor's LRU is fleet-wide, but an L1 hit on one replica never touches the bucket: without a
report, a blob every replica serves from its own disk would look unused and be evicted first.  Each
replica therefore keeps the last access of every digest it served and writes the lot periodically
(one unconditional PUT: only this replica writes its report).  Bounded: past ``limit`` digests the
least recently used are forgotten (the janitor then falls back to the object's write time).
"""

from __future__ import annotations

import collections
import json
import time
from collections.abc import Callable

from appliance.fleet.bucket import Bucket

REPORTS_FOLDER = "reports/"


def report_name(replica_id: str) -> str:
    return f"{REPORTS_FOLDER}{replica_id}.json"


def parse_report(data: bytes) -> dict[str, float]:
    """The digest -> last access map of a report; ValueError for an object that is not one."""
    try:
        raw = json.loads(data)
        return {str(digest): float(when) for digest, when in raw["accessed"].items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"not an access report: {type(exc).__name__}") from None


class AccessReport:
    """This replica's accesses since start (see the module docstring)."""

    def __init__(
        self, replica_id: str, *, limit: int = 100_000, clock: Callable[[], float] = time.time
    ) -> None:
        self.replica_id = replica_id
        self.limit = limit
        self.clock = clock
        self._accessed: collections.OrderedDict[str, float] = collections.OrderedDict()
        self._dirty = False

    def touch(self, digest: str, when: float | None = None) -> None:
        self._accessed[digest] = self.clock() if when is None else when
        self._accessed.move_to_end(digest)
        while len(self._accessed) > self.limit:
            self._accessed.popitem(last=False)
        self._dirty = True

    def snapshot(self) -> dict[str, float]:
        return dict(self._accessed)

    def to_bytes(self) -> bytes:
        body = {"replica": self.replica_id, "written": self.clock(), "accessed": self.snapshot()}
        return json.dumps(body, sort_keys=True).encode()

    async def flush(self, bucket: Bucket) -> bool:
        """Write the report if anything was touched since the last flush; True when written."""
        if not self._dirty:
            return False
        self._dirty = False
        try:
            await bucket.put(report_name(self.replica_id), self.to_bytes(), content_type="application/json")
        except BaseException:
            self._dirty = True  # written next time
            raise
        return True
