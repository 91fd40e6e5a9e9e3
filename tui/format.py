"""How numbers, times and statuses read on screen (no Textual): plain functions, tested alone."""

from __future__ import annotations

import time

from appliance import protocol as p

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")

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
    if value is None:
        return "?"
    amount = float(value)
    for unit in _UNITS:
        if abs(amount) < 1024 or unit == _UNITS[-1]:
            return f"{int(amount)} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    raise AssertionError("unreachable")


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
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s"


def uptime(seconds: float) -> str:
    """``45s``, ``12m30s``, ``3h05m``, ``2d04h``."""
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def clock(epoch: float) -> str:
    """Local wall-clock time of an event."""
    return time.strftime("%H:%M:%S", time.localtime(epoch))


def ago(epoch: float, now: float) -> str:
    if epoch <= 0:
        return "never"
    return uptime(max(0.0, now - epoch)) + " ago"


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
    if value is None:
        return ""
    whole = int(value)
    if whole != value:
        return f"{value:g}"
    out = ""
    for unit, span in (("d", 86400), ("h", 3600), ("m", 60)):
        count, whole = divmod(whole, span)
        if count:
            out += f"{count}{unit}"
    if whole or not out:
        out += f"{whole}s"
    return out
