"""The stream record and entry ids (the contract)."""

from __future__ import annotations

import re

import pytest

from vad.exceptions import StreamRefused
from vad.net.patterns import STREAM_SCHEMES
from vad.streams import StreamRecord, StreamState, check_transport, parse_entry_id, transport_schema


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


@pytest.mark.parametrize("scheme", [*STREAM_SCHEMES, "RTSPS"])
def test_the_transport_rule_and_its_json_schema_agree(scheme: str) -> None:
    """A transport goes with rtsp/rtsps URLs only, udp with rtsp only; the OpenAPI document says the same."""
    url = f"{scheme}://127.0.0.1:8554/cam"
    for transport in ("tcp", "udp", "auto"):
        try:
            check_transport(scheme.lower(), transport)
            allowed = True
        except StreamRefused:
            allowed = False
        stated = all(transport not in rule["if"]["properties"]["transport"]["enum"]
                     or re.match(rule["then"]["properties"]["url"]["pattern"], url)
                     for rule in transport_schema()["allOf"])
        assert stated == allowed, (url, transport)
        assert allowed == (scheme.lower() == "rtsp" or (scheme.lower() == "rtsps" and transport != "udp"))
    check_transport(scheme.lower(), None)  # none asked for: the default, whatever the scheme
