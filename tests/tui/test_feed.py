"""The bounded event feed and its filter."""

from __future__ import annotations

from appliance import protocol as p
from tui.feed import NO_IDENTITY, STATUS_GROUPS, EventFeed, RowFilter


def _event(i: int, status: p.EventStatus = p.EventStatus.HIT, registry: str = "ghcr.io") -> p.EventRecord:
    return p.EventRecord(
        time=float(i),
        client="10.0.0.1",
        registry=registry,
        repository=f"team/app{i % 3}",
        kind=p.EventKind.BLOB,
        reference=f"sha256:{i:064x}",
        status=status,
        bytes=i,
    )


def test_a_burst_larger_than_the_capacity_keeps_the_newest_and_counts_the_rest() -> None:
    feed = EventFeed(capacity=100)
    feed.extend(_event(i) for i in range(1000))
    assert len(feed) == 100
    assert feed.received == 1000 and feed.forgotten == 900
    newest = feed.view(RowFilter(), newest_first=True, limit=10)
    assert [row.record.time for row in newest] == [float(i) for i in range(999, 989, -1)]


def test_tailing_order_is_oldest_first_among_the_newest_rows() -> None:
    feed = EventFeed(capacity=50)
    feed.extend(_event(i) for i in range(20))
    tail = feed.view(RowFilter(), newest_first=False, limit=5)
    assert [row.record.time for row in tail] == [15.0, 16.0, 17.0, 18.0, 19.0]


def test_filters_by_registry_status_group_and_text_together() -> None:
    feed = EventFeed()
    feed.extend(
        [
            _event(1, p.EventStatus.MISS, "ghcr.io"),
            _event(2, p.EventStatus.STALE, "quay.io"),
            _event(3, p.EventStatus.REVALIDATED, "quay.io"),
            _event(4, p.EventStatus.HIT, "quay.io"),
        ]
    )
    stale_or_revalidated = RowFilter(registry="quay.io", statuses=STATUS_GROUPS["STALE/REVALIDATED"])
    assert [r.record.time for r in feed.view(stale_or_revalidated, newest_first=False, limit=10)] == [
        2.0,
        3.0,
    ]
    by_text = RowFilter(text="APP1")  # case-insensitive, over repository, reference, client, message
    assert [r.record.time for r in feed.view(by_text, newest_first=False, limit=10)] == [1.0, 4.0]
    assert not RowFilter().active and by_text.active


def test_version_changes_only_when_rows_arrive_and_engine_drops_are_kept() -> None:
    feed = EventFeed()
    feed.extend([])
    assert feed.version == 0
    feed.extend([_event(1)], dropped=7)
    feed.extend([_event(2)], dropped=3)  # an older frame's count never lowers it
    assert feed.version == 2 and feed.engine_dropped == 7
    assert feed.registries == {"ghcr.io"}


def _decision(i: int, identity: str, access: str) -> p.EventRecord:
    return p.EventRecord(
        time=float(i),
        client="10.0.0.1",
        registry="ghcr.io",
        repository="team/app",
        kind=p.EventKind.MANIFEST,
        reference="latest",
        status=p.EventStatus.ERROR if access not in ("", "allowed") else p.EventStatus.HIT,
        identity=identity,
        access=access,
        access_reason="no access rule allows it" if access == "denied" else "",
    )


def test_the_audit_filter_keeps_only_refused_decisions_and_the_identity_filter_one_identity() -> None:
    feed = EventFeed()
    feed.extend(
        [
            _decision(1, "alice", "allowed"),
            _decision(2, "bob", "denied"),
            _decision(3, "", "unauthenticated"),
            _decision(4, "ci", "limited"),
            _decision(5, "", ""),  # access control off: no decision taken
            _decision(6, "bob", "allowed"),
        ]
    )

    def times(wanted: RowFilter) -> list[float]:
        return [r.record.time for r in feed.view(wanted, newest_first=False, limit=10)]

    assert times(RowFilter(audit=True)) == [2.0, 3.0, 4.0]
    assert times(RowFilter(identity="bob")) == [2.0, 6.0]
    assert times(RowFilter(identity=NO_IDENTITY)) == [3.0, 5.0]
    assert times(RowFilter(identity="bob", audit=True)) == [2.0]
    assert times(RowFilter(text="no access rule")) == [2.0]  # the reason is searchable
    assert RowFilter(audit=True).active and RowFilter(identity="bob").active
    assert feed.identities == {"alice", "bob", "ci", NO_IDENTITY}
