"""The access log line: the audit fields appear when a decision was taken, and only then."""

from __future__ import annotations

from typing import Any

from appliance.accesslog import AccessLog
from appliance.config.model import LogFormat
from appliance.events import CacheStatus, Event, RequestKind


def _event(**fields: Any) -> Event:
    return Event(
        0.0,
        "10.0.0.1:5000",
        "registry.test",
        "bob/app",
        RequestKind.MANIFEST,
        "latest",
        CacheStatus.ERROR,
        **fields,
    )


def test_a_line_carries_identity_and_decision_with_the_reason_of_a_refusal() -> None:
    log = AccessLog(LogFormat.TEXT)
    denied = log.format(
        _event(http_status=403, identity="alice", access="denied", access_reason="access.acl[1] (deny alice)")
    )
    assert " 403 " in denied and denied.endswith("identity=alice access=denied (access.acl[1] (deny alice))")
    allowed = log.format(_event(identity="bob", access="allowed", access_reason="access.acl[0] (allow bob)"))
    assert allowed.endswith("identity=bob access=allowed")
    plain = log.format(_event())
    assert "identity=" not in plain and "access=" not in plain


def test_the_json_line_has_the_audit_fields() -> None:
    line = AccessLog(LogFormat.JSON).format(_event(identity="alice", access="limited", access_reason="over"))
    assert '"identity":"alice","access":"limited","access_reason":"over"' in line
