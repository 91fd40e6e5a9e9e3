"""Messages from the engine link to the app.  Snapshots coalesce: only the newest one matters."""

from __future__ import annotations

from textual.message import Message

from appliance import protocol as p


class EngineConnected(Message):
    def __init__(self, status: p.Status, config: p.ConfigView, same_engine: bool) -> None:
        super().__init__()
        self.status = status
        self.config = config
        self.same_engine = same_engine


class EngineDisconnected(Message):
    def __init__(self, reason: str, attempt: int) -> None:
        super().__init__()
        self.reason = reason
        self.attempt = attempt

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, EngineDisconnected)


class _Snapshot(Message):
    def can_replace(self, message: Message) -> bool:
        # A newer poll result makes an unprocessed older one of the same kind worthless.
        return type(message) is type(self)


class StatusUpdated(_Snapshot):
    def __init__(self, status: p.Status) -> None:
        super().__init__()
        self.status = status


class StatsUpdated(_Snapshot):
    def __init__(self, stats: p.Stats) -> None:
        super().__init__()
        self.stats = stats


class InflightUpdated(_Snapshot):
    def __init__(self, inflight: p.Inflight) -> None:
        super().__init__()
        self.inflight = inflight


class ConfigUpdated(_Snapshot):
    def __init__(self, config: p.ConfigView) -> None:
        super().__init__()
        self.config = config


class FeedChanged(_Snapshot):
    """New rows are in the feed; a burst of these collapses into one redraw."""


class FilterChanged(Message):
    """The filter bar changed what the request table should show."""
