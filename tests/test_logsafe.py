"""Untrusted text shown on one line."""

from appliance.logsafe import shown


def test_shown_text_is_one_printable_line() -> None:
    assert shown("a\nHIT FORGED\x00\\") == "a\\x0aHIT FORGED\\x00\\\\"
    assert shown("x" * 300, 10) == "x" * 10 + "..."
