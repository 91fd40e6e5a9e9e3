"""The janitor's plan, table-driven: watermarks, LRU order, what is never evicted, leftovers."""

from __future__ import annotations

import pytest

from appliance.fleet.bucket import ObjectInfo, Upload
from appliance.fleet.janitor_plan import (
    LeaseSeen,
    Policy,
    digest_of_name,
    lease_for,
    merge_reports,
    plan,
)
from appliance.fleet.leases import LeaseRecord

NOW = 1_000_000.0
MB = 1_000_000


def blob(n: int, size: int = 10 * MB, modified: float = NOW - 86_400) -> ObjectInfo:
    return ObjectInfo(f"blobs/sha256/{n:064x}", size, f'"e{n}"', modified)


def digest(n: int) -> str:
    return f"sha256:{n:064x}"


def lease(n: int, expires: float, kind: str = "blob") -> LeaseSeen:
    name = f"leases/{kind}/sha256/{n:064x}.json"
    return LeaseSeen(name, f'"l{n}"', expires - 30, LeaseRecord("r1", "http://r1.test", expires, "n"))


POLICY = Policy(max_size=100 * MB, high=0.9, low=0.8, recent=600, orphan_after=120, dead_after=60)


def test_names_map_to_their_lease_and_digest() -> None:
    assert lease_for("blobs/sha256/ab") == "leases/blob/sha256/ab.json"
    assert lease_for("manifests/sha256/ab") == "leases/manifest/sha256/ab.json"
    assert lease_for("tags/r/x/latest.json") is None
    assert digest_of_name("blobs/sha256/ab") == "sha256:ab"
    assert digest_of_name("links/r/repo/sha256/ab") is None
    assert digest_of_name("blobs/sha256") is None


def test_reports_merge_to_the_latest_access_of_any_replica() -> None:
    merged = merge_reports([{"a": 5.0, "b": 9.0}, {"a": 7.0}, {"c": 1.0, "b": 2.0}])
    assert merged == {"a": 7.0, "b": 9.0, "c": 1.0}


@pytest.mark.parametrize(
    ("count", "evicted"),
    [
        (9, 0),  # 90 MB: at the high watermark, not above it: nothing
        (10, 2),  # 100 MB: above 90: evict the two oldest, down to 80
        (12, 4),  # 120 MB: over the cap itself: down to 80
    ],
)
def test_eviction_starts_above_the_high_watermark_and_stops_at_the_low(count: int, evicted: int) -> None:
    # Blob n was last used at NOW - 10_000 + n: blob 0 is the least recently used.
    objects = [blob(n) for n in range(count)]
    accesses = {digest(n): NOW - 10_000 + n for n in range(count)}
    result = plan(objects, accesses, [], [], POLICY, NOW)
    assert [info.name for info in result.evict] == [blob(n).name for n in range(evicted)]
    assert result.bucket_bytes == count * 10 * MB
    assert result.after_bytes == (count - evicted) * 10 * MB
    assert not result.short


def test_the_order_is_fleet_wide_lru_of_reports_and_write_times() -> None:
    objects = [
        blob(0, modified=NOW - 5_000),  # never reported: its write time counts
        blob(1, modified=NOW - 90_000),  # reported used late by one replica
        blob(2, modified=NOW - 90_000),  # reported by two, the later one counts
        *[blob(n, modified=NOW - 3_000) for n in range(3, 10)],
        ObjectInfo("manifests/sha256/" + "f" * 64, 10 * MB, '"m"', NOW - 90_000),  # oldest of all
    ]
    accesses = merge_reports([{digest(1): NOW - 1_000, digest(2): NOW - 80_000}, {digest(2): NOW - 4_000}])
    result = plan(objects, accesses, [], [], POLICY, NOW)
    assert [info.name for info in result.evict] == [
        "manifests/sha256/" + "f" * 64,
        blob(0).name,
        blob(2).name,
    ]


def test_unbounded_never_evicts() -> None:
    result = plan([blob(n) for n in range(50)], {}, [], [], Policy(max_size=0), NOW)
    assert result.evict == () and result.after_bytes == result.bucket_bytes


def test_other_objects_count_toward_the_size_but_are_never_evicted() -> None:
    objects = [
        ObjectInfo("tags/registry.test/library/alpine/3.19.json", 50 * MB, '"t"', NOW - 90_000),
        ObjectInfo("reports/r1.json", 45 * MB, '"r"', NOW - 90_000),
        blob(1),
    ]
    result = plan(objects, {}, [], [], POLICY, NOW)
    assert [info.name for info in result.evict] == [blob(1).name]
    assert result.short  # 95 MB of objects a janitor may not evict stay over 80


@pytest.mark.parametrize(
    ("leases", "accesses", "kept"),
    [
        ([lease(0, NOW + 20)], {}, {0}),  # a live lease: being filled or followed
        ([lease(0, NOW - 30)], {}, {0}),  # expired moments ago: may still be taken over
        ([lease(0, NOW - 61)], {}, set()),  # long dead: no protection
        ([], {digest(0): NOW - 599}, {0}),  # used within `recent`
        ([], {digest(0): NOW - 601}, set()),
    ],
)
def test_leased_and_recently_used_blobs_survive(
    leases: list[LeaseSeen], accesses: dict[str, float], kept: set[int]
) -> None:
    objects = [blob(n) for n in range(11)]
    result = plan(objects, accesses, leases, [], POLICY, NOW)
    evicted = {info.name for info in result.evict}
    for n in kept:
        assert blob(n).name not in evicted
    # Still down to the low watermark, by evicting the next ones instead.
    assert result.after_bytes <= 80 * MB
    assert len(result.evict) == 3


def test_when_everything_is_in_use_the_plan_says_it_falls_short() -> None:
    objects = [blob(n) for n in range(11)]
    result = plan(objects, {digest(n): NOW - 5 for n in range(11)}, [], [], POLICY, NOW)
    assert result.evict == () and result.short


@pytest.mark.parametrize(
    ("age", "leases", "aborted"),
    [
        (60, [], False),  # young: a fill may not have renewed yet
        (121, [], True),  # old and no lease: its replica died mid-fill
        (121, [lease(7, NOW + 20)], False),  # old but leased: a long fill still running
        (121, [lease(7, NOW - 100)], True),  # old, lease dead
    ],
)
def test_orphaned_uploads_are_old_ones_without_a_live_lease(
    age: float, leases: list[LeaseSeen], aborted: bool
) -> None:
    upload = Upload(blob(7).name, "upload-7", NOW - age)
    result = plan([], {}, leases, [upload], POLICY, NOW)
    assert result.abort == ((upload,) if aborted else ())


@pytest.mark.parametrize(
    ("seen", "dead"),
    [
        (lease(1, NOW + 10), False),
        (lease(1, NOW - 60), False),  # within dead_after of its expiry
        (lease(1, NOW - 61), True),
        (LeaseSeen("leases/blob/junk.json", '"j"', NOW - 30, None), False),  # unreadable, young
        (LeaseSeen("leases/blob/junk.json", '"j"', NOW - 61, None), True),  # unreadable, old
    ],
)
def test_dead_leases_are_long_expired_or_unreadable_and_old(seen: LeaseSeen, dead: bool) -> None:
    result = plan([], {}, [seen], [], POLICY, NOW)
    assert result.dead_leases == ((seen,) if dead else ())


def test_margins_follow_the_lease_ttl_and_watermarks_are_checked() -> None:
    policy = Policy.for_fleet(500 * MB, lease_ttl=30)
    assert (policy.orphan_after, policy.dead_after) == (120, 60)
    with pytest.raises(ValueError):
        Policy(max_size=1, high=0.7, low=0.8)
    with pytest.raises(ValueError):
        Policy(max_size=-1)
