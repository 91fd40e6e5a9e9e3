"""nginx size and time syntax, parsed and formatted, so the seed's values keep working.

Sizes: ``32g``, ``500m``, ``1024k``, plain bytes (``k``/``m``/``g`` are powers of 1024, either case).
Times: ``60d``, ``10m``, ``1h30m``, ``90s``, ``500ms``, plain numbers are seconds; units as in nginx
(``ms s m h d w M y``, ``M`` = 30 days, ``y`` = 365 days).  Errors name the variable and the value.
"""

from __future__ import annotations

import re

from appliance.errors import ConfigError
from appliance.protocol.access_input import AccessInputError, parse_duration
from appliance.protocol.units_text import setting_time

_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
_SIZE_RE = re.compile(r"(\d+)([kKmMgG]?)")



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
    """Seconds from an nginx time (``1h30m``, ``500ms``) or a non-negative number of seconds.

    The parser is the protocol's (the dashboard reads a token's lifetime with it too)."""
    try:
        return parse_duration(value, where)
    except AccessInputError as exc:
        raise ConfigError(where, exc.message) from None


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
