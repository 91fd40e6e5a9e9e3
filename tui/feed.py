"""The bounded buffer behind the live request table (no Textual).

Events arrive in bursts (a frame carries up to 500); the feed appends them to a ring of
``capacity`` rows and counts what it had to forget.  The table does not redraw per event: it asks
for ``view()`` at most every 100 ms, so the cost of a burst is one ``deque.extend`` plus one bounded
redraw, whatever the rate.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from appliance import protocol as p
from appliance.protocol.events import AccessResult

DEFAULT_CAPACITY = 5000
# The identity filter's choices stay a short list even if names arrive without end.
MAX_IDENTITIES = 500


@dataclass(frozen=True, slots=True)
class Row:
    """An event and its arrival number, which is stable while it stays in the feed (the table's row key)."""

    seq: int
    record: p.EventRecord


# Status groups offered by the filter; STALE and REVALIDATED share a colour, so they share a choice.
STATUS_GROUPS: dict[str, frozenset[p.EventStatus]] = {
    "HIT": frozenset({p.EventStatus.HIT, p.EventStatus.COALESCED}),
    "MISS": frozenset({p.EventStatus.MISS}),
    "STALE/REVALIDATED": frozenset({p.EventStatus.STALE, p.EventStatus.REVALIDATED}),
    "BYPASS": frozenset({p.EventStatus.BYPASS}),
    "ERROR": frozenset({p.EventStatus.ERROR}),
}


# The audit filter: the access decisions someone reviewing access wants to see (not the allowed ones).
AUDIT_RESULTS = frozenset(
    {AccessResult.DENIED.value, AccessResult.UNAUTHENTICATED.value, AccessResult.LIMITED.value}
)
# The identity filter's choice for requests that carried none ("" on the wire).
NO_IDENTITY = "(none)"


@dataclass(frozen=True, slots=True)
class RowFilter:
    """What the table shows: empty means everything.

    ``identity`` is an identity name, ``NO_IDENTITY`` for requests without one, or "" for any;
    ``audit`` keeps only refused decisions (denied, unauthenticated, limited).
    """

    registry: str = ""
    statuses: frozenset[p.EventStatus] = frozenset()
    text: str = ""
    identity: str = ""
    audit: bool = False

    def matches(self, record: p.EventRecord) -> bool:
        if self.registry and record.registry != self.registry:
            return False
        if self.statuses and record.status not in self.statuses:
            return False
        if self.audit and record.access not in AUDIT_RESULTS:
            return False
        if self.identity and (record.identity or NO_IDENTITY) != self.identity:
            return False
        if self.text:
            needle = self.text.lower()
            haystack = (
                f"{record.registry} {record.repository} {record.reference} {record.client} "
                f"{record.identity} {record.access_reason} {record.message}"
            )
            if needle not in haystack.lower():
                return False
        return True

    @property
    def active(self) -> bool:
        return bool(self.registry or self.statuses or self.text or self.identity or self.audit)


@dataclass
class EventFeed:
    capacity: int = DEFAULT_CAPACITY
    received: int = 0  # events seen since start
    forgotten: int = 0  # pushed out of the ring by newer ones
    engine_dropped: int = 0  # lost by the engine because this subscriber fell behind
    version: int = 0  # bumps on every change, so a reader can tell whether to redraw
    registries: set[str] = field(default_factory=set)
    identities: set[str] = field(default_factory=set)  # as the identity filter offers them
    _rows: deque[Row] = field(init=False)
    _seq: itertools.count[int] = field(init=False, default_factory=itertools.count)

    def __post_init__(self) -> None:
        self._rows = deque(maxlen=self.capacity)

    def __len__(self) -> int:
        return len(self._rows)

    def extend(self, records: Iterable[p.EventRecord], dropped: int = 0) -> int:
        added = 0
        for record in records:
            if len(self._rows) == self.capacity:
                self.forgotten += 1
            self._rows.append(Row(next(self._seq), record))
            self.registries.add(record.registry)
            if len(self.identities) < MAX_IDENTITIES:
                self.identities.add(record.identity or NO_IDENTITY)
            added += 1
        self.received += added
        self.engine_dropped = max(self.engine_dropped, dropped)
        if added:
            self.version += 1
        return added

    def clear(self) -> None:
        self._rows.clear()
        self.version += 1

    def view(self, wanted: RowFilter, *, newest_first: bool, limit: int) -> list[Row]:
        """At most ``limit`` matching rows: the newest ones, in display order."""
        picked: list[Row] = []
        for row in reversed(self._rows):
            if wanted.matches(row.record):
                picked.append(row)
                if len(picked) >= limit:
                    break
        if not newest_first:
            picked.reverse()
        return picked

    def last_seq(self) -> int:
        return self._rows[-1].seq if self._rows else -1
