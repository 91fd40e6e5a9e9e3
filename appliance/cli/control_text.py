"""The text the control commands print: status, stats, events, registries and cached images.

Pure functions from protocol records to strings; ``--json`` prints the records themselves instead.
Bytes and durations are spelled by ``protocol.units_text``, as on the dashboard.
"""

from __future__ import annotations

import time

from appliance import protocol as p
from appliance.protocol import units_text


def format_status(status: p.Status) -> str:
    lines = [
        f"appliance {status.version} (pid {status.pid}), up {units_text.span(status.uptime)}",
        f"listening on  {', '.join(status.listen)}",
        f"CA            {status.ca.fingerprint_sha256} ({status.ca.days_left} days left)",
        f"config        {status.config_path or '(none)'}",
    ]
    if status.cache_disk is not None:
        lines.append(f"cache disk    {format_cache_disk(status.cache_disk)}")
    hub = status.docker_hub_rate_limit
    if hub is not None and hub.remaining is not None:
        lines.append(
            f"Docker Hub    {hub.remaining}/{hub.limit if hub.limit is not None else '?'} pulls left"
        )
    if status.fleet is not None:
        # The engine's clock at the answer, so ages read the same whatever this machine's clock says.
        lines.extend(format_fleet(status.fleet, now=status.started + status.uptime))
    lines.append("registries:")
    for registry in status.registries:
        detail = f" - {registry.last_error}" if registry.health is p.RegistryHealth.DEGRADED else ""
        lines.append(f"  {registry.host:<32} {registry.health:<12} {registry.requests} requests{detail}")
    return "\n".join(lines)


def format_cache_disk(disk: p.CacheDisk) -> str:
    """``FULL: new content passed through uncached (12.0 KiB free; 3 writes failed ...)``."""
    free = "free space unknown" if disk.free is None else f"{units_text.size(disk.free)} free"
    if disk.state is p.CacheDiskState.FULL:
        head = f"FULL: serving cached content, passing the rest through uncached ({free})"
    elif disk.state is p.CacheDiskState.LOW:
        head = f"LOW: {free}, under min_free_disk {units_text.size(disk.min_free)}; new blobs pass through"
    else:
        head = f"ok, {free}"
    failures = [
        f"{count} {what}"
        for count, what in (
            (disk.write_failures, "writes failed"),
            (disk.dropped_records, "use records dropped"),
            (disk.passthrough_fills, "fills passed through"),
        )
        if count
    ]
    if failures:
        head += "; " + ", ".join(failures)
    if disk.last_failure and disk.state is not p.CacheDiskState.OK:
        head += f"; last: {disk.last_failure}"
    return head


def format_fleet(fleet: p.FleetStatus, *, now: float) -> list[str]:
    """The fleet block of ``status``: the bucket, the replicas seen, and what the tiers did since start."""
    count = len(fleet.replicas)
    lines = [
        f"fleet         {fleet.store} as {fleet.replica_id}, {count} replica{'s' if count != 1 else ''} seen"
    ]
    label = "  replicas    "
    for replica in sorted(fleet.replicas, key=lambda r: (r.replica_id != fleet.replica_id, r.replica_id)):
        me = " (this one)" if replica.replica_id == fleet.replica_id else ""
        url = f" {replica.advertise_url}" if replica.advertise_url else ""
        lines.append(f"{label}{replica.replica_id}{me}{url}, seen {units_text.ago(replica.last_seen, now)}")
        label = " " * len(label)
    lines.append(
        f"  leases      {fleet.lease_wins} won (filled from upstream), {fleet.lease_losses} lost "
        f"(followed another replica), {fleet.lease_takeovers} taken over"
    )
    lines.append(
        f"  L2          {fleet.l2_hits} hits from the bucket; "
        f"{units_text.size(fleet.follow_bytes)} followed from other replicas"
    )
    lines.append(f"  bucket      {format_bucket(fleet.bucket_bytes, fleet.bucket_max)}")
    lines.append(f"  janitor     {fleet.janitor or 'none elected'}")
    if fleet.last_error:
        lines.append(f"  last error  {fleet.last_error}")
    return lines


def format_bucket(used: int | None, cap: int) -> str:
    """``1.5 GiB of 500.0 GiB (0%)``; ``not listed yet`` before the janitor's first listing."""
    text = "not listed yet" if used is None else units_text.size(used)
    if cap <= 0:
        return f"{text}, unbounded"
    share = "" if used is None else f" ({used / cap:.0%})"
    return f"{text} of {units_text.size(cap)}{share}"


def format_counters(c: p.Counters) -> str:
    return (
        f"{c.requests} requests: {c.hits} hit, {c.misses} miss, {c.coalesced} coalesced, {c.stale} stale, "
        f"{c.revalidated} revalidated, {c.bypass} bypass, {c.errors} error; hit ratio {c.hit_ratio:.0%}; "
        f"{units_text.size(c.bytes_from_cache)} from cache (saved), "
        f"{units_text.size(c.bytes_from_upstream)} from upstream"
    )


def format_stats(stats: p.Stats) -> str:
    cache = stats.cache
    used = cache.bytes / cache.cap if cache.cap else 0.0
    lines = [
        f"cache   {units_text.size(cache.bytes)} of {units_text.size(cache.cap)} ({used:.0%}), "
        f"{cache.entries} entries, {cache.evicted} evicted",
        *([f"disk    {format_cache_disk(cache.disk)}"] if cache.disk is not None else []),
        f"total   {format_counters(stats.totals)}",
        f"events  {stats.events.subscribers} subscribers, {stats.events.dropped_total} dropped",
    ]
    for registry in stats.registries:
        lines.append(f"{registry.registry}: {units_text.size(registry.cache_bytes)} cached")
        lines.append(f"    {format_counters(registry.counters)}")
    return "\n".join(lines)


def format_event(e: p.EventRecord) -> str:
    stamp = time.strftime("%H:%M:%S", time.localtime(e.time))
    where = f"{e.registry}/{e.repository}" if e.repository else e.registry
    ref = f" {e.reference}" if e.reference else ""
    line = (
        f"{stamp} {e.status:<11} {e.method:<4} {e.kind:<8} {where}{ref} {e.http_status} "
        f"{units_text.size(e.bytes)} {e.duration:.3f}s"
    )
    return f"{line} {e.message}" if e.message else line


def format_registry(r: p.RegistryView) -> str:
    """One line of ``registry ls``: the host, then what differs from a plain HTTPS registry."""
    extras = [f"aliases {', '.join(r.aliases)}"] if r.aliases else []
    if r.scheme != "https":
        extras.append(r.scheme)
    if r.insecure:
        extras.append("TLS not verified")
    if r.allow_push is not None:
        extras.append("push allowed" if r.allow_push else "push blocked")
    if r.tag_ttl is not None:
        extras.append(f"tag ttl {units_text.setting_time(r.tag_ttl)}")
    return r.host + (f"  ({'; '.join(extras)})" if extras else "")


def format_image(image: p.ImageEntry) -> str:
    """One line of ``cache ls``."""
    pin = " [pinned]" if image.pinned else ""
    tags = f" tags: {', '.join(image.tags)}" if image.tags else ""
    size = f"{units_text.size(image.size)} in {image.blobs} entries"
    return f"{image.registry}/{image.repository}  {size}{pin}{tags}"
