"""``appliance status`` text: a fleet block when the engine's answer carries one, reading right."""

from __future__ import annotations

from dataclasses import replace

from appliance import protocol as p
from appliance.cli.control_text import format_bucket, format_status

STARTED = 1_700_000_000.0
UPTIME = 3600.0
NOW = STARTED + UPTIME


def _status(fleet: p.FleetStatus | None) -> p.Status:
    """A status answer as the CLI gets it: through the wire codec, not a record built in place."""
    status = p.Status(
        api_version=p.API_VERSION,
        version="1.2.3",
        pid=7,
        started=STARTED,
        uptime=UPTIME,
        listen=("0.0.0.0:3128",),
        ca=p.CaInfo(fingerprint_sha256="ab" * 32, not_after=STARTED + 86400 * 300, days_left=300),
        registries=(p.RegistryStatus("registry-1.docker.io"),),
        fleet=fleet,
    )
    return p.Status.loads(status.dumps())


def _fleet(**changes: object) -> p.FleetStatus:
    base = p.FleetStatus(
        store="s3://cache/fleet",
        replica_id="replica-b",
        replicas=(
            p.FleetReplica("replica-c", "http://10.0.0.7:3128", NOW - 125),
            p.FleetReplica("replica-b", "http://10.0.0.6:3128", NOW - 2),
            p.FleetReplica("replica-a", "http://10.0.0.5:3128", NOW - 3 * 3600 - 300),
        ),
        lease_wins=12,
        lease_losses=30,
        lease_takeovers=1,
        l2_hits=40,
        follow_bytes=3 * 1024**2 + 512 * 1024,
        bucket_bytes=50 * 1024**3,
        bucket_max=500 * 1024**3,
        janitor="replica-a",
        last_error="",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def _block(text: str) -> list[str]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("fleet "))
    end = next(i for i, line in enumerate(lines) if line == "registries:")
    return lines[start:end]


def test_a_status_without_a_fleet_prints_no_fleet_block() -> None:
    text = format_status(_status(None))
    assert "fleet" not in text


def test_the_fleet_block_names_the_store_this_replica_and_every_replica_seen_with_its_age() -> None:
    block = _block(format_status(_status(_fleet())))
    assert block[0] == "fleet         s3://cache/fleet as replica-b, 3 replicas seen"
    # This replica first, the others by name, each with the age of its last report.
    assert block[1:4] == [
        "  replicas    replica-b (this one) http://10.0.0.6:3128, seen 2s ago",
        "              replica-a http://10.0.0.5:3128, seen 3h05m ago",
        "              replica-c http://10.0.0.7:3128, seen 2m05s ago",
    ]


def test_the_fleet_block_counts_leases_l2_hits_followed_bytes_the_bucket_and_the_janitor() -> None:
    block = _block(format_status(_status(_fleet())))
    leases = "12 won (filled from upstream), 30 lost (followed another replica), 1 taken over"
    assert f"  leases      {leases}" in block
    assert "  L2          40 hits from the bucket; 3.5 MiB followed from other replicas" in block
    assert "  bucket      50.0 GiB of 500.0 GiB (10%)" in block
    assert "  janitor     replica-a" in block
    assert not any("last error" in line for line in block)


def test_the_fleet_block_says_what_is_unknown_and_shows_the_last_error() -> None:
    fleet = _fleet(
        replicas=(p.FleetReplica("solo"),),
        replica_id="solo",
        bucket_bytes=None,
        bucket_max=0,
        janitor="",
        last_error="lease renewal for sha256:ab failed: 503 SlowDown",
    )
    block = _block(format_status(_status(fleet)))
    assert block[0] == "fleet         s3://cache/fleet as solo, 1 replica seen"
    assert block[1] == "  replicas    solo (this one), seen never"
    assert "  bucket      not listed yet, unbounded" in block
    assert "  janitor     none elected" in block
    assert block[-1] == "  last error  lease renewal for sha256:ab failed: 503 SlowDown"


def test_a_bucket_over_its_cap_shows_more_than_a_hundred_percent() -> None:
    assert format_bucket(600, 500) == "600 B of 500 B (120%)"
    assert format_bucket(None, 1024) == "not listed yet of 1.0 KiB"
