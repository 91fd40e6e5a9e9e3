"""The one spelling of bytes and durations: what the CLI prints is what the dashboard shows."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance import protocol as p
from appliance.cli.control_text import format_registry, format_status
from appliance.config.units import format_time, parse_time
from appliance.protocol import units_text
from tui import format as fmt


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "?"),
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (3 * 1024**3, "3.0 GiB"),
        (5 * 1024**4, "5.0 TiB"),
        (2048 * 1024**5, "2048.0 PiB"),  # the largest unit carries on counting
    ],
)
def test_sizes_are_binary_units_with_one_decimal(value: int | None, text: str) -> None:
    assert units_text.size(value) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (45.9, "45s"),
        (750, "12m30s"),
        (185, "3m05s"),
        (3 * 3600 + 5 * 60 + 59, "3h05m"),
        (2 * 86400 + 4 * 3600, "2d04h"),
    ],
)
def test_spans_show_the_two_largest_units_with_the_second_zero_padded(seconds: float, text: str) -> None:
    assert units_text.span(seconds) == text


def test_ago_counts_from_now_and_says_never_for_an_unset_time() -> None:
    assert units_text.ago(1000.0, 1000.0 + 3 * 3600 + 300) == "3h05m ago"
    assert units_text.ago(0.0, 1000.0) == "never"
    assert units_text.ago(2000.0, 1000.0) == "0s ago"  # a clock step back is not a negative age


@pytest.mark.parametrize(("seconds", "text"), [(0.012, "12ms"), (2.44, "2.4s"), (185, "3m05s")])
def test_request_durations_keep_their_precision_where_it_matters(seconds: float, text: str) -> None:
    assert units_text.took(seconds) == text


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0s"), (0.5, "500ms"), (90, "1m30s"), (5400, "1h30m"), (60 * 86400, "60d")]
)
def test_setting_times_are_the_config_files_spelling(seconds: float, text: str) -> None:
    assert units_text.setting_time(seconds) == text
    assert format_time(seconds) == text


@given(st.integers(min_value=0, max_value=10**10))
def test_a_setting_time_parses_back_to_the_same_seconds(millis: int) -> None:
    assert parse_time(units_text.setting_time(millis / 1000), "t") == pytest.approx(millis / 1000)


def test_the_cli_and_the_dashboard_spell_an_uptime_and_a_ttl_alike() -> None:
    uptime = 3 * 3600 + 5 * 60
    status = p.Status(
        api_version=p.API_VERSION,
        version="0",
        pid=1,
        started=0.0,
        uptime=uptime,
        listen=(),
        ca=p.CaInfo(fingerprint_sha256="ab", not_after=0.0, days_left=1),
    )
    assert "up 3h05m" in format_status(status) and fmt.uptime(uptime) == "3h05m"
    registry = p.RegistryView("quay.io", tag_ttl=5400.0)
    assert format_registry(registry).endswith("(tag ttl 1h30m)") and fmt.seconds_setting(5400.0) == "1h30m"
