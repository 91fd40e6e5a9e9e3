"""How numbers, times and statuses read on screen (no Textual): plain functions, tested alone.

Bytes and durations are spelled by ``appliance.protocol.units_text``, shared with the CLI.
"""

from __future__ import annotations

import time

from appliance import protocol as p
from appliance.protocol import units_text

# Rich style per status: HIT green, MISS yellow, STALE/REVALIDATED blue, ERROR red.
STATUS_STYLES: dict[p.EventStatus, str] = {
    p.EventStatus.HIT: "bold green",
    p.EventStatus.MISS: "bold yellow",
    p.EventStatus.STALE: "bold blue",
    p.EventStatus.REVALIDATED: "bold blue",
    p.EventStatus.COALESCED: "bold cyan",
    p.EventStatus.BYPASS: "magenta",
    p.EventStatus.ERROR: "bold red",
}

HEALTH_STYLES: dict[p.RegistryHealth, str] = {
    p.RegistryHealth.UNKNOWN: "dim",
    p.RegistryHealth.OK: "green",
    p.RegistryHealth.DEGRADED: "red",
    p.RegistryHealth.RATE_LIMITED: "yellow",
}


def size(value: int | None) -> str:
    return units_text.size(value)


def progress(done: int, total: int | None) -> str:
    """``61.0/148.0 MiB``: the unit once when both sides share it."""
    if total is None:
        return f"{size(done)}/?"
    left, right = size(done), size(total)
    left_number, _, left_unit = left.partition(" ")
    right_number, _, right_unit = right.partition(" ")
    if left_unit == right_unit:
        return f"{left_number}/{right_number} {right_unit}"
    return f"{left}/{right}"


def rate(bytes_per_second: float) -> str:
    return f"{size(int(bytes_per_second))}/s"


def duration(seconds: float) -> str:
    """Request durations: ``850ms``, ``2.4s``, ``3m05s``."""
    return units_text.took(seconds)


def uptime(seconds: float) -> str:
    """``45s``, ``12m30s``, ``3h05m``, ``2d04h``."""
    return units_text.span(seconds)


def clock(epoch: float) -> str:
    """Local wall-clock time of an event."""
    return time.strftime("%H:%M:%S", time.localtime(epoch))


def ago(epoch: float, now: float) -> str:
    return units_text.ago(epoch, now)


def percent(ratio: float) -> str:
    return f"{ratio * 100:.1f}%"


def reference(text: str, width: int = 19) -> str:
    """Digests shortened to ``sha256:`` + 12 hex digits; tags cut to ``width``."""
    if text.startswith("sha256:") and len(text) > width:
        return text[:width] if width >= 19 else "@" + text[7 : 7 + width - 1]
    return cut(text, width)


def cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def fingerprint(value: str, pairs: int = 4) -> str:
    """``AB:CD:…:EF:01``: the first and last bytes are what people compare by eye (0: in full)."""
    digits = value.upper().replace(":", "")
    octets = [digits[i : i + 2] for i in range(0, len(digits), 2)]
    if not pairs or len(octets) <= 2 * pairs:
        return ":".join(octets)
    return ":".join(octets[:pairs]) + ":…:" + ":".join(octets[-pairs:])


def seconds_setting(value: float | None) -> str:
    """A TTL as the config file spells it (``1h30m``); empty for unset."""
    return "" if value is None else units_text.setting_time(value)
