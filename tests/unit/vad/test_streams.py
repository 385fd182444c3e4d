"""The stream record and entry ids (the contract)."""

from __future__ import annotations

from vad.streams import StreamRecord, StreamState, parse_entry_id


def test_entry_ids_within_range_parse_and_nothing_else() -> None:
    assert parse_entry_id("1700000000000-3") == (1700000000000, 3)
    assert parse_entry_id("5") == (5, 0)
    for bad in ("", "-1", "01-0", "1-", "abc", "1-2-3", "18446744073709551616-0", " 1"):
        assert parse_entry_id(bad) is None, bad


def test_the_record_round_trips_and_a_broken_one_reads_as_gone() -> None:
    record = StreamRecord(id="s1", owner="o", url="rtsp://u:p@h/x", display_url="rtsp://***@h/x",
                          open_event={"id": "e", "class": "fighting", "start_s": 1.0})
    again = StreamRecord.read("s1", {k.encode(): v.encode() for k, v in record.to_redis().items()})
    assert again == record and again.status == StreamState.queued and not again.status.terminal
    assert StreamRecord.read("s1", {b"status": b"{not json"}) is None
    assert StreamRecord.read("s1", {}) is None
    assert StreamState.failed.terminal and StreamState.stopped.terminal
