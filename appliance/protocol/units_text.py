"""How byte counts and durations read to a person: one spelling for the CLI, the dashboard and the config.

The protocol carries numbers (bytes, seconds, epoch times); these turn them into text.  They live here,
beside the records, because the dashboard may import nothing of the engine but ``appliance.protocol``
(tests/tui/test_wall.py), and the CLI should read the same as the dashboard (``3h05m`` in both).
``setting_time`` is the config file's own spelling, which ``config.units`` parses back.
"""

from __future__ import annotations

_SIZE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
# The config spelling uses the nginx units whose meaning nobody misreads (no M for months, no y).
_SETTING_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def size(value: float | None) -> str:
    """``0 B``, ``1.5 KiB``, ``3.0 GiB``; ``?`` for unknown."""
    if value is None:
        return "?"
    amount = float(value)
    for unit in _SIZE_UNITS:
        if abs(amount) < 1024 or unit == _SIZE_UNITS[-1]:
            break
        amount /= 1024
    return f"{int(amount)} B" if unit == "B" else f"{amount:.1f} {unit}"


def span(seconds: float) -> str:
    """A length of time in its two largest units: ``45s``, ``12m30s``, ``3h05m``, ``2d04h``."""
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


def ago(epoch: float, now: float) -> str:
    """``3h05m ago``; ``never`` for an epoch of 0 (a time that was never set)."""
    if epoch <= 0:
        return "never"
    return span(max(0.0, now - epoch)) + " ago"


def took(seconds: float) -> str:
    """How long one request took: ``850ms``, ``2.4s``, ``3m05s``."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s"


def setting_time(seconds: float) -> str:
    """The exact config-file (nginx) spelling of a time: ``5400`` -> ``1h30m``, ``0.5`` -> ``500ms``."""
    millis = round(seconds * 1000)
    if millis == 0:
        return "0s"
    whole, rest_ms = divmod(millis, 1000)
    parts = []
    for suffix, factor in _SETTING_UNITS:
        count, whole = divmod(whole, factor)
        if count:
            parts.append(f"{count}{suffix}")
    if rest_ms:
        parts.append(f"{rest_ms}ms")
    return "".join(parts)
