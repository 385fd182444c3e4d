"""The event record contract: one shape from a stream's or a job's hash, cursors that round-trip and refuse
anything else, index members that sort by time."""

from __future__ import annotations

import json

from vad.events import EventRecord, decode_cursor, encode_cursor, event_member, member_id, read_record


def stored(**fields: object) -> dict[bytes, bytes]:
    return {k.encode(): json.dumps(v).encode() for k, v in fields.items()}


LIVE = {"id": "e1", "class": "fighting", "class_prob": 0.6, "start_s": 3.0, "end_s": 7.5, "peak_score": 0.95,
        "mean_score": 0.8, "first_index": 3, "last_index": 5, "opened_at": 100.0, "closed_at": 104.0,
        "start_at": 1000.0, "end_at": 1004.5}


def test_a_stream_hash_and_a_job_hash_read_into_one_shape() -> None:
    live = read_record(stored(source="stream", source_id="cam", source_name="Door", owner="o", threshold=None,
                              event=LIVE, state="closed", at=100.0, member=event_member(100.0, "e1")))
    job = read_record(stored(source="job", source_id="j1", source_name="a.mp4", owner="o", threshold=0.5,
                             event={k: LIVE[k] for k in ("id", "class", "class_prob", "start_s", "end_s",
                                                         "peak_score", "mean_score")},
                             state="closed", at=200.0, member=event_member(200.0, "e1")))
    assert isinstance(live, EventRecord) and isinstance(job, EventRecord)
    assert live.model_dump().keys() == job.model_dump().keys()
    assert (live.closed_at, live.start_at, live.end_at, live.threshold) == (104.0, 1000.0, 1004.5, None)
    assert (job.opened_at, job.closed_at, job.start_at) == (200.0, 200.0, None)  # a job's events: the result time
    assert job.links.source == "/v1/jobs/j1" and live.links.scores == "/v1/events/e1/scores"
    opened = read_record(stored(source="stream", source_id="cam", owner="o", event={**LIVE, "end_s": None},
                                state="open", at=100.0))
    assert opened is not None and opened.end_s is None and opened.closed_at is None and opened.end_at is None


def test_unreadable_hashes_are_no_record() -> None:
    assert read_record({}) is None
    assert read_record({b"event": b"{not json"}) is None
    assert read_record(stored(source="stream", event={"id": "x"}, state="closed", at=1.0)) is None


def test_members_sort_by_time_and_cursors_round_trip() -> None:
    members = [event_member(t, "b") for t in (9.5, 10.0, 1_700_000_000.25)]
    assert members == sorted(members) and member_id(members[0]) == "b"
    assert decode_cursor(encode_cursor(members[2])) == members[2]
    for bad in ("", "!!", "x:y", "000000000000001", "%%%", "00000000000000a1b", "000000000000001é"):
        assert decode_cursor(bad) is None
