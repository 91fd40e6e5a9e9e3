"""nginx size/time syntax: what the seed's users already write keeps meaning the same."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.config.units import format_size, format_time, parse_size, parse_time
from appliance.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("32g", 32 * 1024**3),
        ("500m", 500 * 1024**2),
        ("1024k", 1024**2),
        ("123", 123),
        ("0", 0),
        ("2G", 2 * 1024**3),
    ],
)
def test_nginx_sizes_parse_to_bytes(text: str, expected: int) -> None:
    assert parse_size(text, "CACHE_MAX_SIZE") == expected


@pytest.mark.parametrize("text", ["12q", "", "-1", "1.5g", "g", "32 g", "32gb"])
def test_bad_size_names_variable_and_value(text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_size(text, "CACHE_MAX_SIZE")
    assert "CACHE_MAX_SIZE" in str(caught.value)
    assert repr(text) in str(caught.value)


def test_negative_integer_size_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"cache.max_size.*-5"):
        parse_size(-5, "cache.max_size")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("60d", 60 * 86400.0),
        ("10m", 600.0),
        ("1h30m", 5400.0),
        ("90s", 90.0),
        ("500ms", 0.5),
        ("30", 30.0),
        ("2.5", 2.5),
        ("1w", 7 * 86400.0),
        ("1M", 30 * 86400.0),
        ("1y", 365 * 86400.0),
        ("1d2h3m4s5ms", 86400 + 7200 + 180 + 4 + 0.005),
    ],
)
def test_nginx_times_parse_to_seconds(text: str, expected: float) -> None:
    assert parse_time(text, "CACHE_INACTIVE") == pytest.approx(expected)


@pytest.mark.parametrize("text", ["-5s", "-1", "10x", "m", "1h 30m", "", "h1", "1.5h"])
def test_bad_time_names_variable_and_value(text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_time(text, "SEND_TIMEOUT")
    assert str(caught.value).startswith("SEND_TIMEOUT: ")
    assert repr(text) in str(caught.value)


def test_negative_number_time_from_toml_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"timeouts.send.*-3"):
        parse_time(-3, "timeouts.send")


def test_booleans_are_not_numbers() -> None:
    with pytest.raises(ConfigError):
        parse_time(True, "x")
    with pytest.raises(ConfigError):
        parse_size(True, "x")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(5184000, "60d"), (600, "10m"), (3600, "1h"), (5400, "1h30m"), (0.5, "500ms"), (0, "0s"), (61, "1m1s")],
)
def test_times_format_in_nginx_syntax(seconds: float, text: str) -> None:
    assert format_time(seconds) == text


@given(st.integers(min_value=0, max_value=10**12))
def test_time_format_parses_back_exactly(millis: int) -> None:
    assert parse_time(format_time(millis / 1000), "t") == pytest.approx(millis / 1000)


@given(st.integers(min_value=0, max_value=2**50))
def test_size_format_parses_back_exactly(size: int) -> None:
    assert parse_size(format_size(size), "s") == size
    if size and size % 1024**3 == 0:
        assert format_size(size).endswith("g")
