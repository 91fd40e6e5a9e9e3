"""Whether the cache's filesystem has room, from its free space and from writes that failed for lack of it.

A full disk must never stop the engine serving: cached content is still read, and what cannot be
stored is passed through.  So every write that fails for lack of space is reported here instead of
being raised to a client, and this is what ``appliance status``, ``appliance stats``, the dashboard
and ``/metrics`` show as the cache's disk state:

* ``ok``: room to store.
* ``low``: free space is below ``min_free_disk``; new blobs are passed through, not stored.
* ``full``: a write failed for lack of space (ENOSPC, EDQUOT, SQLite's "database or disk is full")
  and no look at the free space since has shown room again (fills are not started meanwhile), or
  less than ``NEARLY_FULL`` is free, whatever the watermark says.
"""

from __future__ import annotations

import errno
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

log = logging.getLogger(__name__)

# Free bytes above the watermark that count as "room again" after a write failed for lack of space:
# less than this and the next blob would most likely fail the same way.
ROOM_AGAIN = 16 * 1024 * 1024
# Less than this free is a full disk even with min_free_disk = 0: no layer fits.
NEARLY_FULL = 1024 * 1024
_NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
# How often one kind of dropped write is logged: a busy engine on a full disk drops one per request.
_WARN_EVERY = 60.0


class DiskState(StrEnum):
    OK = "ok"
    LOW = "low"  # below min_free_disk: new blobs pass through
    FULL = "full"  # writes fail for lack of space


def is_no_space(exc: BaseException) -> bool:
    """The filesystem (or quota) ran out of room, as opposed to any other storage failure."""
    if isinstance(exc, OSError):
        return exc.errno in _NO_SPACE_ERRNOS
    if isinstance(exc, sqlite3.Error):
        return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
    return False


@dataclass(frozen=True, slots=True)
class StorageReport:
    """A snapshot for status views."""

    state: DiskState
    free: int | None  # bytes free on the cache's filesystem at the last look, None if unknown
    min_free: int  # the watermark (cache.min_free_disk)
    write_failures: int  # writes (files or index) that failed for lack of space since start
    dropped_records: int  # index writes that only record use (access times, refs), dropped
    passthrough_fills: int  # fills that lost their storage mid-way and went on uncached
    last_failure: str  # what failed last, "" if nothing did
    last_failure_at: float | None  # epoch seconds


class StorageHealth:
    """Counts of writes that failed for lack of space, and the cache's disk state (module docstring)."""

    def __init__(self, min_free: int, *, clock: Callable[[], float] = time.time) -> None:
        self.min_free = min_free
        self._clock = clock
        self.free: int | None = None
        self.full = False
        self.write_failures = 0
        self.dropped_records = 0
        self.passthrough_fills = 0
        self.last_failure = ""
        self.last_failure_at: float | None = None
        self._warned: dict[str, float] = {}

    @property
    def state(self) -> DiskState:
        if self.full or (self.free is not None and self.free < NEARLY_FULL):
            return DiskState.FULL
        if self.free is not None and self.free < self.min_free:
            return DiskState.LOW
        return DiskState.OK

    def saw_free(self, free: int | None) -> None:
        """A fresh look at the free space; enough room clears ``full``."""
        self.free = free
        if self.full and free is not None and free >= self.min_free + ROOM_AGAIN:
            self.full = False
            log.info("cache disk has room again (%d bytes free): storing resumes", free)

    def failed(self, what: str, exc: BaseException) -> None:
        """A write failed; for lack of space, the disk is full until a look at it shows room."""
        self.write_failures += 1
        self.last_failure = f"{what}: {_reason(exc)}"
        self.last_failure_at = self._clock()
        if is_no_space(exc) and not self.full:
            self.full = True
            log.warning("cache disk is full (%s): serving on, passing through what cannot be stored", what)

    def dropped(self, what: str, exc: BaseException) -> None:
        """An index write that only records use was dropped (the request was served anyway)."""
        self.dropped_records += 1
        self.failed(what, exc)
        now = self._clock()
        if now - self._warned.get(what, float("-inf")) >= _WARN_EVERY:
            self._warned[what] = now
            log.warning(
                "cache index: %s dropped (%s); %d use records dropped since start",
                what,
                _reason(exc),
                self.dropped_records,
            )

    def passthrough(self, what: str, exc: BaseException) -> None:
        """A fill lost its storage mid-way and went on uncached."""
        self.passthrough_fills += 1
        self.failed(what, exc)

    def report(self) -> StorageReport:
        return StorageReport(
            state=self.state,
            free=self.free,
            min_free=self.min_free,
            write_failures=self.write_failures,
            dropped_records=self.dropped_records,
            passthrough_fills=self.passthrough_fills,
            last_failure=self.last_failure,
            last_failure_at=self.last_failure_at,
        )


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
