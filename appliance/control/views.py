"""Engine state -> control-protocol records (``appliance.protocol``): pure conversions, no I/O.

Secrets are masked here, at the one place engine values become wire values.  The configuration's
simple keys reach ``ConfigView`` as the key table (``config.keys``) says.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from appliance import __version__
from appliance import protocol as p
from appliance.cache import CacheUsage, FillProgress, RepositoryListing, VerifyReport
from appliance.cache.storage_health import StorageReport
from appliance.config.keys import KEYS, ConfigKey, Kind, Mask, get, with_value
from appliance.config.model import DOCKER_HUB_HOST, Config, Credential, Secret, SecretStore
from appliance.config.seed_env_export import export_env, format_env_lines
from appliance.config.values import format_tunnel, mask_url
from appliance.events import CacheStatus, Event
from appliance.protocol.status import FleetStatus
from appliance.stats import Stats, Totals
from appliance.upstream.ratelimit import RateLimitState


def rate_limit(state: RateLimitState | None) -> p.RateLimit | None:
    if state is None:
        return None
    quota = state.remaining or state.limit
    return p.RateLimit(
        limit=state.limit.value if state.limit else None,
        remaining=state.remaining.value if state.remaining else None,
        window=quota.window if quota else None,
        source=state.source,
        blocked_until=state.blocked_until,
        updated_at=state.updated_at,
    )


def registry_statuses(
    config: Config, stats: Stats, rate_limits: Mapping[str, RateLimitState], now: float
) -> tuple[p.RegistryStatus, ...]:
    result = []
    for registry in config.registries:
        health = stats.health(registry.host)
        state = rate_limits.get(registry.host)
        if state is not None and state.blocked(now):
            verdict = p.RegistryHealth.RATE_LIMITED
        elif health.degraded(now):
            verdict = p.RegistryHealth.DEGRADED
        elif health.requests:
            verdict = p.RegistryHealth.OK
        else:
            verdict = p.RegistryHealth.UNKNOWN
        result.append(
            p.RegistryStatus(
                host=registry.host,
                aliases=registry.aliases,
                scheme=str(registry.scheme),
                health=verdict,
                requests=health.requests,
                errors=health.errors,
                last_error=health.last_error,
                last_error_at=health.last_error_at,
                last_ok_at=health.last_ok_at,
                rate_limit=rate_limit(state),
            )
        )
    return tuple(result)


def status(
    *,
    config: Config,
    stats: Stats,
    rate_limits: Mapping[str, RateLimitState],
    started: float,
    pid: int,
    listen: Iterable[tuple[str, int]],
    ca: p.CaInfo,
    storage: StorageReport | None = None,
    fleet: FleetStatus | None = None,
) -> p.Status:
    now = time.time()
    return p.Status(
        api_version=p.API_VERSION,
        version=__version__,
        pid=pid,
        started=started,
        uptime=round(now - started, 3),
        listen=tuple(f"[{h}]:{port}" if ":" in h else f"{h}:{port}" for h, port in listen),
        ca=ca,
        registries=registry_statuses(config, stats, rate_limits, now),
        docker_hub_rate_limit=rate_limit(rate_limits.get(DOCKER_HUB_HOST)),
        config_path=str(config.config_path) if config.config_path else None,
        control_socket=str(config.control_socket),
        cache_disk=cache_disk(storage),
        fleet=fleet,
    )


def cache_disk(storage: StorageReport | None) -> p.CacheDisk | None:
    if storage is None:
        return None
    return p.CacheDisk(
        state=p.CacheDiskState(storage.state.value),
        free=storage.free,
        min_free=storage.min_free,
        write_failures=storage.write_failures,
        dropped_records=storage.dropped_records,
        passthrough_fills=storage.passthrough_fills,
        last_failure=storage.last_failure,
        last_failure_at=storage.last_failure_at,
    )


def counters(totals: Totals) -> p.Counters:
    return p.Counters(
        requests=totals.requests,
        hits=totals.count(CacheStatus.HIT),
        misses=totals.count(CacheStatus.MISS),
        stale=totals.count(CacheStatus.STALE),
        revalidated=totals.count(CacheStatus.REVALIDATED),
        coalesced=totals.count(CacheStatus.COALESCED),
        bypass=totals.count(CacheStatus.BYPASS),
        errors=totals.count(CacheStatus.ERROR),
        bytes_from_cache=totals.bytes_from_cache,
        bytes_from_upstream=totals.bytes_from_upstream,
        hit_ratio=p.hit_ratio(totals.cache_served, totals.upstream_served),
    )


def stats(stats: Stats, usage: CacheUsage, events: p.EventStreamStats) -> p.Stats:
    on_disk = {r.registry: r for r in usage.registries}
    names = sorted(set(stats.registries()) | set(on_disk))
    registries = tuple(
        p.RegistryStats(
            registry=name,
            counters=counters(stats.totals(name)),
            cache_bytes=on_disk[name].bytes if name in on_disk else 0,
            cache_entries=on_disk[name].entries if name in on_disk else 0,
        )
        for name in names
    )
    return p.Stats(
        since=stats.since,
        totals=counters(stats.totals()),
        cache=p.CacheUsage(
            bytes=usage.bytes,
            entries=usage.entries,
            cap=usage.cap,
            filling=usage.filling,
            evicted=usage.evicted,
            disk=cache_disk(usage.storage),
        ),
        registries=registries,
        requests=tuple(
            p.RequestCount(registry=r, kind=p.EventKind(k), status=p.EventStatus(s), count=c, bytes=b)
            for r, k, s, c, b in stats.cells()
        ),
        events=events,
        upstream_errors=sum(stats.upstream_errors.values()),
    )


def inflight(fills: Sequence[FillProgress], monotonic_now: float) -> p.Inflight:
    return p.Inflight(
        fills=tuple(
            p.Fill(
                registry=f.registry,
                repository=f.repository,
                digest=f.digest,
                done=f.done,
                total=f.total,
                rate=f.rate,
                clients=f.readers,
                elapsed=max(0.0, monotonic_now - f.started),
                error=f.error,
            )
            for f in fills
            if not f.finished
        )
    )


def event_record(event: Event) -> p.EventRecord:
    return p.EventRecord.from_json(event.to_dict())


def config_view(config: Config, editable: bool) -> p.ConfigView:
    return p.ConfigView(
        config_path=str(config.config_path) if config.config_path else None,
        editable=editable,
        tunnel=format_tunnel(config.tunnel),
        **{key.view: view_value(key, get(config, key)) for key in KEYS if key.view},
        registries=tuple(
            p.RegistryView(
                host=r.host,
                aliases=r.aliases,
                auth_hosts=r.auth_hosts,
                scheme=str(r.scheme),
                insecure=r.insecure,
                ca_file=str(r.ca_file) if r.ca_file else None,
                allow_push=r.allow_push,
                manifest_cache=r.manifest_cache,
                tag_ttl=r.tag_ttl,
            )
            for r in config.registries
        ),
        credentials=tuple(credential_view(c) for c in config.credentials),
    )


def credential_view(credential: Credential) -> p.CredentialView:
    reference = credential.reference if credential.store is not SecretStore.TOML else None
    return p.CredentialView(
        scope=credential.scope, username=credential.username, store=str(credential.store), reference=reference
    )


def view_value(key: ConfigKey, value: Any) -> Any:
    """A key's value as the ``ConfigView`` shows it: JSON-able, its secret masked."""
    if value is None:
        return None
    if key.mask is Mask.URL_PASSWORD:
        return mask_url(value)
    match key.kind:
        case Kind.LISTEN:
            host, port = value
            return f"{host}:{port}"
        case Kind.PATH | Kind.TEXT | Kind.TUNNEL_MODE:
            return str(value)
        case Kind.BOOL | Kind.SIZE | Kind.TIME | Kind.WHOLE:
            return value
        case Kind.RESOLVE | Kind.TUNNEL_HOSTS:
            return tuple(str(item) for item in value)


def masked(config: Config) -> Config:
    """``config`` with every secret replaced by the mask, for views that render it whole."""
    for key in KEYS:
        if key.mask is Mask.URL_PASSWORD and (value := get(config, key)):
            config = with_value(config, key, mask_url(value))
    return replace(config, credentials=tuple(replace(c, password=Secret(p.MASK)) for c in config.credentials))


def env_view(config: Config) -> p.EnvView:
    pairs, warnings = export_env(masked(config))
    return p.EnvView(
        pairs=tuple(p.EnvPair(name, value) for name, value in pairs),
        shell=format_env_lines(pairs, "shell"),
        warnings=tuple(warnings),
    )


def images(listings: Iterable[RepositoryListing]) -> p.ImageList:
    return p.ImageList(
        images=tuple(
            p.ImageEntry(
                registry=item.registry,
                repository=item.repository,
                pinned=item.pinned,
                size=item.size,
                blobs=len(item.blobs),
                last_access=item.last_access,
                tags=tuple(sorted({t.tag for t in item.tags})),
            )
            for item in listings
        )
    )


def verify_result(report: VerifyReport) -> p.VerifyResult:
    return p.VerifyResult(
        consistent=report.consistent,
        repaired=report.repaired,
        checked=report.checked,
        rows=report.rows,
        summary=report.summary(),
        corrupt=report.corrupt,
        missing=report.missing,
        orphans=report.orphans,
        unfinished=report.unfinished,
        strays=report.strays,
        loose=report.loose,
    )
