"""nginx size and time syntax, parsed and formatted, so the seed's values keep working.

Sizes: ``32g``, ``500m``, ``1024k``, plain bytes (``k``/``m``/``g`` are powers of 1024, either case).
Times: ``60d``, ``10m``, ``1h30m``, ``90s``, ``500ms``, plain numbers are seconds; units as in nginx
(``ms s m h d w M y``, ``M`` = 30 days, ``y`` = 365 days).  Errors name the variable and the value.
"""

from __future__ import annotations

import math
import re

from appliance.errors import ConfigError
from appliance.protocol.units_text import setting_time

_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
_SIZE_RE = re.compile(r"(\d+)([kKmMgG]?)")

# Case matters: nginx's "m" is minutes and "M" is months.
_TIME_UNITS = {
    "y": 365 * 86400.0,
    "M": 30 * 86400.0,
    "w": 7 * 86400.0,
    "d": 86400.0,
    "h": 3600.0,
    "m": 60.0,
    "s": 1.0,
    "ms": 0.001,
}
_TIME_PART_RE = re.compile(r"(\d+)(ms|y|M|w|d|h|m|s)")
_PLAIN_NUMBER_RE = re.compile(r"\d+(\.\d+)?")


def parse_size(value: str | int, where: str) -> int:
    """Bytes from an nginx size (``32g``) or a non-negative integer."""
    if isinstance(value, bool):
        raise ConfigError(where, f"invalid size {value!r}: expected e.g. 32g, 500m, 1024k or bytes")
    if isinstance(value, int):
        if value < 0:
            raise ConfigError(where, f"invalid size {value!r}: must not be negative")
        return value
    text = value.strip()
    match = _SIZE_RE.fullmatch(text)
    if match is None:
        raise ConfigError(where, f"invalid size {value!r}: expected e.g. 32g, 500m, 1024k or bytes")
    return int(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]


def parse_time(value: str | int | float, where: str) -> float:
    """Seconds from an nginx time (``1h30m``, ``500ms``) or a non-negative number of seconds."""
    if isinstance(value, bool):
        raise ConfigError(where, f"invalid time {value!r}: expected e.g. 60d, 10m, 1h30m, 90s or seconds")
    if isinstance(value, int | float):
        if value < 0 or not math.isfinite(value):
            raise ConfigError(where, f"invalid time {value!r}: must be a non-negative number of seconds")
        return float(value)
    text = value.strip()
    if text.startswith("-"):
        raise ConfigError(where, f"invalid time {value!r}: must not be negative")
    if _PLAIN_NUMBER_RE.fullmatch(text):
        return float(text)
    position = 0
    total = 0.0
    for match in _TIME_PART_RE.finditer(text):
        if match.start() != position:
            break
        total += int(match.group(1)) * _TIME_UNITS[match.group(2)]
        position = match.end()
    if position == 0 or position != len(text):
        raise ConfigError(where, f"invalid time {value!r}: expected e.g. 60d, 10m, 1h30m, 90s or seconds")
    return total


def format_size(size: int) -> str:
    """The shortest exact nginx spelling of ``size`` bytes (``34359738368`` -> ``32g``)."""
    for suffix, factor in (("g", 1024**3), ("m", 1024**2), ("k", 1024)):
        if size and size % factor == 0:
            return f"{size // factor}{suffix}"
    return str(size)


def format_time(seconds: float) -> str:
    """An exact nginx spelling of ``seconds`` (``5400`` -> ``1h30m``, ``0.5`` -> ``500ms``).

    The spelling is the protocol's, so the dashboard's forms show a TTL as this file would hold it.
    """
    return setting_time(seconds)
