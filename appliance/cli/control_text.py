"""The text the control commands print: status, stats, events, registries and cached images.

Pure functions from protocol records to strings; ``--json`` prints the records themselves instead.
The dashboard keeps its own copy of the byte and duration formats (``tui/format.py``): it may
import only the protocol and its client from the engine package.
"""

from __future__ import annotations

import time

from appliance import protocol as p


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def human_duration(seconds: float) -> str:
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{minutes}m"
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


def format_status(status: p.Status) -> str:
    lines = [
        f"appliance {status.version} (pid {status.pid}), up {human_duration(status.uptime)}",
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
    lines.append("registries:")
    for registry in status.registries:
        detail = f" - {registry.last_error}" if registry.health is p.RegistryHealth.DEGRADED else ""
        lines.append(f"  {registry.host:<32} {registry.health:<12} {registry.requests} requests{detail}")
    return "\n".join(lines)


def format_cache_disk(disk: p.CacheDisk) -> str:
    """``FULL: new content passed through uncached (12.0 KiB free; 3 writes failed ...)``."""
    free = "free space unknown" if disk.free is None else f"{human_bytes(disk.free)} free"
    if disk.state is p.CacheDiskState.FULL:
        head = f"FULL: serving cached content, passing the rest through uncached ({free})"
    elif disk.state is p.CacheDiskState.LOW:
        head = f"LOW: {free}, under min_free_disk {human_bytes(disk.min_free)}; new blobs pass through"
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


def format_counters(c: p.Counters) -> str:
    return (
        f"{c.requests} requests: {c.hits} hit, {c.misses} miss, {c.coalesced} coalesced, {c.stale} stale, "
        f"{c.revalidated} revalidated, {c.bypass} bypass, {c.errors} error; hit ratio {c.hit_ratio:.0%}; "
        f"{human_bytes(c.bytes_from_cache)} from cache (saved), "
        f"{human_bytes(c.bytes_from_upstream)} from upstream"
    )


def format_stats(stats: p.Stats) -> str:
    cache = stats.cache
    used = cache.bytes / cache.cap if cache.cap else 0.0
    lines = [
        f"cache   {human_bytes(cache.bytes)} of {human_bytes(cache.cap)} ({used:.0%}), "
        f"{cache.entries} entries, {cache.evicted} evicted",
        *([f"disk    {format_cache_disk(cache.disk)}"] if cache.disk is not None else []),
        f"total   {format_counters(stats.totals)}",
        f"events  {stats.events.subscribers} subscribers, {stats.events.dropped_total} dropped",
    ]
    for registry in stats.registries:
        lines.append(f"{registry.registry}: {human_bytes(registry.cache_bytes)} cached")
        lines.append(f"    {format_counters(registry.counters)}")
    return "\n".join(lines)


def format_event(e: p.EventRecord) -> str:
    stamp = time.strftime("%H:%M:%S", time.localtime(e.time))
    where = f"{e.registry}/{e.repository}" if e.repository else e.registry
    ref = f" {e.reference}" if e.reference else ""
    line = (
        f"{stamp} {e.status:<11} {e.method:<4} {e.kind:<8} {where}{ref} {e.http_status} "
        f"{human_bytes(e.bytes)} {e.duration:.3f}s"
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
        extras.append(f"tag ttl {human_duration(r.tag_ttl)}")
    return r.host + (f"  ({'; '.join(extras)})" if extras else "")


def format_image(image: p.ImageEntry) -> str:
    """One line of ``cache ls``."""
    pin = " [pinned]" if image.pinned else ""
    tags = f" tags: {', '.join(image.tags)}" if image.tags else ""
    size = f"{human_bytes(image.size)} in {image.blobs} entries"
    return f"{image.registry}/{image.repository}  {size}{pin}{tags}"
