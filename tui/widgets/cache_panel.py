"""Cache usage: a gauge of used vs cap, hit ratio, bytes saved, throughput sparkline, Docker Hub quota,
the fleet (when the engine is one of several replicas sharing a bucket) and the per-registry breakdown."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, ProgressBar, Sparkline, Static

from appliance import protocol as p
from appliance.protocol import units_text
from tui import format as fmt
from tui.state import holder


def rate_limit_text(limit: p.RateLimit | None) -> Text:
    text = Text("Docker Hub ", style="dim", no_wrap=True, overflow="ellipsis")
    if limit is None or limit.remaining is None:
        text.append("quota not seen yet", style="dim italic")
        return text
    style = "green"
    if limit.limit and limit.remaining < max(1, limit.limit // 10):
        style = "bold red"
    elif limit.limit and limit.remaining < limit.limit // 2:
        style = "yellow"
    text.append(f"{limit.remaining}", style=style)
    if limit.limit is not None:
        text.append(f"/{limit.limit}")
    text.append(" pulls left")
    if limit.window:
        text.append(f" / {fmt.uptime(limit.window)}", style="dim")
    if limit.blocked_until:
        text.append(" · BLOCKED", style="bold red")
    return text


def fleet_text(fleet: p.FleetStatus, now: float) -> Text:
    """Two lines (three with an error): who we are among how many, then what the shared tier did."""
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append("Fleet ", style="dim")
    text.append(fleet.replica_id, style="bold")
    others = [r for r in fleet.replicas if r.replica_id != fleet.replica_id]
    text.append(f" + {len(others)} other{'s' if len(others) != 1 else ''}")
    if others:
        latest = max(r.last_seen for r in others)
        text.append(f" (seen {units_text.ago(latest, now)})", style="dim")
    text.append(" · janitor ", style="dim")
    text.append(fleet.janitor or "none")
    text.append("\nL2 ", style="dim")
    text.append(str(fleet.l2_hits), style="bold green")
    text.append(" · won ", style="dim")
    text.append(str(fleet.lease_wins))
    text.append(" · followed ", style="dim")
    text.append(f"{fleet.lease_losses} ({fmt.size(fleet.follow_bytes)})")
    if fleet.lease_takeovers:
        text.append(" · taken over ", style="dim")
        text.append(str(fleet.lease_takeovers), style="yellow")
    text.append(" · bucket ", style="dim")
    text.append(fmt.size(fleet.bucket_bytes) if fleet.bucket_bytes is not None else "?")
    if fleet.bucket_max:
        text.append(f"/{fmt.size(fleet.bucket_max)}")
    if fleet.last_error:
        text.append("\nfleet error: ", style="bold red")
        text.append(fleet.last_error, style="red")
    return text


class CachePanel(Vertical):
    DEFAULT_CSS = """
    CachePanel { height: auto; }
    CachePanel #gauge-row { height: 1; }
    CachePanel #spark-row { height: 1; }
    CachePanel Sparkline { width: 1fr; height: 1; }
    CachePanel #per-registry { height: auto; max-height: 12; }
    """

    def compose(self) -> ComposeResult:
        with Horizontal(id="gauge-row"):
            yield Static("Used ", id="gauge-label", classes="label")
            yield ProgressBar(total=1, show_eta=False, id="gauge")
        yield Static(id="cache-size")
        yield Static(id="cache-ratio")
        with Horizontal(id="spark-row"):
            yield Static("Rate ", classes="label")
            yield Sparkline([0.0], id="throughput")
            yield Static(id="throughput-now")
        yield Static(id="rate-limit")
        yield Static(id="fleet")
        table: DataTable[Text | str] = DataTable(id="per-registry", cursor_type="none", show_cursor=False)
        yield table

    def on_mount(self) -> None:
        table = self.query_one("#per-registry", DataTable)
        table.add_column("Registry", key="registry")
        table.add_column(Text("Cached", justify="right"), key="cached")
        table.add_column(Text("Hit%", justify="right"), key="ratio")
        table.add_column(Text("Reqs", justify="right"), key="requests")
        holder(self).changed.subscribe(self, self._changed)
        self._redraw_stats()
        self._redraw_status()

    def _changed(self, topic: str) -> None:
        if topic == "stats":
            self._redraw_stats()
        elif topic == "status":
            self._redraw_status()

    def _redraw_stats(self) -> None:
        state = holder(self).state
        stats = state.stats
        if stats is None:
            self.query_one("#cache-size", Static).update(Text("waiting for the engine…", style="dim"))
            return
        cache = stats.cache
        self.query_one("#gauge", ProgressBar).update(
            total=max(cache.cap, 1), progress=min(cache.bytes, cache.cap)
        )
        size = Text(no_wrap=True, overflow="ellipsis")
        disk = cache.disk
        # First on the line, so a narrow panel cuts the sizes, never this.
        if disk is not None and disk.state is p.CacheDiskState.FULL:
            size.append("DISK FULL", style="bold white on red")
            size.append(" · ")
        elif disk is not None and disk.state is p.CacheDiskState.LOW:
            size.append("disk low", style="bold yellow")
            size.append(" · ")
        size.append(fmt.size(cache.bytes), style="bold")
        size.append(f" of {fmt.size(cache.cap)} · {cache.entries} entries", style="")
        if cache.filling:
            size.append(f" · +{fmt.size(cache.filling)} filling", style="yellow")
        self.query_one("#cache-size", Static).update(size)
        totals = stats.totals
        ratio = Text(no_wrap=True, overflow="ellipsis")
        ratio.append("Hits ", style="dim")
        ratio.append(fmt.percent(totals.hit_ratio), style="bold green")
        ratio.append(" · saved ", style="dim")
        ratio.append(fmt.size(totals.bytes_from_cache), style="bold")
        ratio.append(" · upstream ", style="dim")
        ratio.append(fmt.size(totals.bytes_from_upstream))
        self.query_one("#cache-ratio", Static).update(ratio)
        self.query_one("#throughput", Sparkline).data = list(state.throughput)
        self.query_one("#throughput-now", Static).update(f" {fmt.rate(state.current_rate)}")
        table = self.query_one("#per-registry", DataTable)
        table.clear()
        for entry in sorted(stats.registries, key=lambda r: (-r.cache_bytes, r.registry)):
            counters = entry.counters
            table.add_row(
                fmt.cut(entry.registry, 24),
                Text(fmt.size(entry.cache_bytes), justify="right"),
                Text(fmt.percent(counters.hit_ratio) if counters.requests else "-", justify="right"),
                Text(str(counters.requests), justify="right"),
                key=entry.registry,
            )

    def _redraw_status(self) -> None:
        status = holder(self).state.status
        limit = status.docker_hub_rate_limit if status is not None else None
        self.query_one("#rate-limit", Static).update(rate_limit_text(limit))
        line = self.query_one("#fleet", Static)
        fleet = status.fleet if status is not None else None
        # Hidden rather than empty for a single appliance: it takes no row at all.
        line.display = fleet is not None
        if status is not None and fleet is not None:
            # The engine's clock at its answer, so ages do not depend on this machine's clock.
            line.update(fleet_text(fleet, status.started + status.uptime))
