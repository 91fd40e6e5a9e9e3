"""The wire schema: round trips, validation, and the wall between it and the engine."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance import protocol as p
from appliance.events import AccessResult, CacheStatus, Event, RequestKind


def test_protocol_enums_match_the_engine_enums() -> None:
    assert {s.value for s in p.EventStatus} == {s.value for s in CacheStatus}
    assert {k.value for k in p.EventKind} == {k.value for k in RequestKind}
    assert {a.value for a in p.events.AccessResult} == {a.value for a in AccessResult}


def test_an_engine_event_dict_decodes_as_an_event_record() -> None:
    event = Event(
        1.5, "10.0.0.1", "ghcr.io", "org/app", RequestKind.BLOB, "sha256:ab", CacheStatus.MISS, bytes=9
    )
    record = p.EventRecord.from_json(event.to_dict())
    assert record.status is p.EventStatus.MISS and record.kind is p.EventKind.BLOB and record.bytes == 9


def test_an_engine_event_dict_carries_every_field_and_the_record_every_one_of_them() -> None:
    event = Event(
        2.0, "c", "r", "a/b", RequestKind.MANIFEST, "latest", CacheStatus.STALE, "HEAD", 200, 5, 0.5, 503, "m"
    )
    data = event.to_dict()
    assert list(data) == [f.name for f in dataclasses.fields(Event)]
    assert [f.name for f in dataclasses.fields(p.EventRecord)] == list(data)
    assert p.EventRecord.from_json(data).to_json() == data


def test_nested_records_round_trip_through_json_text() -> None:
    stats = p.Stats(
        since=1.0,
        totals=p.Counters(requests=3, hits=2, misses=1, hit_ratio=2 / 3),
        cache=p.CacheUsage(bytes=10, entries=1, cap=100),
        registries=(p.RegistryStats("ghcr.io", p.Counters(requests=3)),),
        requests=(p.RequestCount("ghcr.io", p.EventKind.BLOB, p.EventStatus.HIT, 2, 20),),
        events=p.EventStreamStats(1, 5, 10, 500),
    )
    assert p.Stats.loads(stats.dumps()) == stats


def test_unknown_keys_are_ignored_and_missing_defaults_apply() -> None:
    usage = p.CacheUsage.from_json({"bytes": 1, "entries": 2, "cap": 3, "added_in_v1_5": True})
    assert usage == p.CacheUsage(bytes=1, entries=2, cap=3, filling=0, evicted=0)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"entries": 2, "cap": 3}, "bytes: required"),
        ({"bytes": "1", "entries": 2, "cap": 3}, "expected an integer"),
        ({"bytes": True, "entries": 2, "cap": 3}, "expected an integer"),
        ([], "expected an object"),
    ],
)
def test_wrong_shapes_raise_protocol_error(data: object, message: str) -> None:
    with pytest.raises(p.ProtocolError, match=message):
        p.CacheUsage.from_json(data)


def _event_json(**changes: object) -> dict[str, object]:
    record = p.EventRecord(
        time=1.0,
        client="127.0.0.1:1",
        registry="r.io",
        repository="a/b",
        kind=p.EventKind.BLOB,
        reference="sha256:" + "0" * 64,
        status=p.EventStatus.HIT,
    )
    return {**record.to_json(), **changes}


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"status": "NOPE"}, "EventBatch.events[1].status: 'NOPE' is not one of "),
        ({"upstream_status": "200"}, "EventBatch.events[1].upstream_status: expected an integer, got '200'"),
        ({"bytes": None}, "EventBatch.events[1].bytes: expected an integer, got None"),
        ({"client": None}, "EventBatch.events[1].client: expected a string, got None"),
    ],
)
def test_errors_deep_in_a_batch_name_the_path_to_the_wrong_value(
    bad: dict[str, object], message: str
) -> None:
    frame = {"type": "events", "events": [_event_json(), _event_json(**bad)]}
    with pytest.raises(p.ProtocolError) as caught:
        p.EventBatch.from_json(frame)
    assert str(caught.value).startswith(message), str(caught.value)


def test_a_missing_field_deep_in_a_batch_is_named_with_its_path() -> None:
    event = _event_json()
    del event["registry"]
    with pytest.raises(p.ProtocolError, match=r"^EventBatch\.events\[0\]\.registry: required$"):
        p.EventBatch.from_json({"events": [event]})


def test_optional_fields_take_null_and_values() -> None:
    batch = p.EventBatch.from_json(
        {"events": [_event_json(upstream_status=None), _event_json(upstream_status=503)]}
    )
    assert [e.upstream_status for e in batch.events] == [None, 503]


def test_error_envelope_round_trips_with_its_http_status() -> None:
    body = p.ErrorBody(p.ErrorCode.INVALID_CONFIG, "unknown key 'colour'", "registries[0].colour")
    assert body.http_status == 422
    assert p.ErrorBody.from_envelope(body.envelope()) == body
    with pytest.raises(p.ProtocolError):
        p.ErrorBody.from_envelope({"status": "ok"})


def test_credential_edit_never_shows_its_password_in_repr() -> None:
    edit = p.CredentialEdit(scope="ghcr.io", username="u", password="hunter2-secret")
    assert "hunter2-secret" not in repr(edit)
    assert p.CredentialEdit.from_json(edit.to_json()).password == "hunter2-secret"


def test_event_filter_query_round_trip_and_matching() -> None:
    wanted = p.EventFilter(registries=("ghcr.io", "quay.io"), statuses=(p.EventStatus.HIT,))
    query = dict(part.split("=") for part in wanted.query(replay=5).replace("%2C", ",").split("&"))
    assert query["replay"] == "5"
    assert p.EventFilter.from_query(query) == wanted
    assert wanted.matches_fields("quay.io", "HIT", "blob")
    assert not wanted.matches_fields("quay.io", "MISS", "blob")
    assert not wanted.matches_fields("docker.io", "HIT", "blob")
    with pytest.raises(p.ProtocolError, match="status"):
        p.EventFilter.from_query({"status": "HITT"})


def test_stream_frames_are_told_apart_by_type() -> None:
    hello = p.StreamHello(api_version=1, replayed=2, queue_size=10)
    batch = p.EventBatch(events=(), dropped=3)
    assert p.parse_stream_frame(hello.dumps()) == hello
    assert p.parse_stream_frame(batch.dumps()) == batch
    with pytest.raises(p.ProtocolError):
        p.parse_stream_frame('{"type": "bogus"}')


def test_purge_request_must_name_something() -> None:
    p.PurgeRequest(all=True).check()
    p.PurgeRequest(registry="ghcr.io", repository="org/app").check()
    for bad in (p.PurgeRequest(), p.PurgeRequest(repository="x"), p.PurgeRequest(registry="r", all=True)):
        with pytest.raises(p.ProtocolError):
            bad.check()


@given(
    st.builds(
        p.Fill,
        registry=st.text(),
        repository=st.text(),
        digest=st.text(),
        done=st.integers(min_value=0),
        total=st.none() | st.integers(min_value=0),
        rate=st.floats(allow_nan=False, allow_infinity=False),
        clients=st.integers(min_value=0),
        elapsed=st.floats(min_value=0, allow_nan=False, allow_infinity=False),
        error=st.none() | st.text(),
    )
)
def test_fill_round_trips_for_any_values(fill: p.Fill) -> None:
    assert p.Fill.from_json(fill.to_json()) == fill
    assert p.Inflight.loads(p.Inflight(fills=(fill,)).dumps()).fills == (fill,)


def test_protocol_module_imports_nothing_from_the_engine() -> None:
    code = (
        "import sys, appliance.protocol; "
        "print(sorted(m for m in sys.modules if m.startswith('appliance') or m in ('aiohttp', 'textual')"
        " if not m.startswith('appliance.protocol.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['appliance', 'appliance.protocol']"


def test_control_client_imports_only_the_protocol_from_the_engine() -> None:
    code = (
        "import sys, appliance.control.client; "
        "print(sorted(m for m in sys.modules if (m.startswith('appliance') or m == 'textual')"
        " and not m.startswith('appliance.protocol.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    # appliance.control is the package holding the client: its __init__ imports nothing.
    assert out.strip() == str(
        ["appliance", "appliance.control", "appliance.control.client", "appliance.protocol"]
    )
