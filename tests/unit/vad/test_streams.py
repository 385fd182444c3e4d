"""The stream URL policy (schemes, local paths, the allow-list of networks and names, DNS answers outside it,
credentials never in a message), the URL pattern the OpenAPI document states, entry ids and the record."""

from __future__ import annotations

import re
from collections.abc import Sequence

import pytest

from vad.exceptions import StreamRefused
from vad.streams import (
    STREAM_SCHEMES,
    STREAM_URL_SYNTAX,
    StreamRecord,
    StreamState,
    check_stream_url,
    check_transport,
    display_name,
    parse_entry_id,
    transport_schema,
    url_pattern,
)

ALLOW = ["10.20.0.0/16", "192.168.1.7", "cam.site", "*.cams.example.com", "fd00::/8"]
DNS = {"cam.site": ["192.168.50.9"], "inside.lan": ["10.20.3.4"], "mixed.lan": ["10.20.3.4", "8.8.8.8"],
       "outside.lan": ["172.16.0.1"], "a.cams.example.com": ["203.0.113.5"], "v6.lan": ["fd00::7"],
       "mapped.lan": ["::ffff:10.20.0.9"]}


def resolver(host: str, port: int | None) -> Sequence[str]:
    if host in DNS:
        return DNS[host]
    if re.fullmatch(r"[0-9.]+|[0-9a-f:]+", host):
        return [host]
    raise OSError(f"test: {host} does not resolve")


def check(url: str, allowlist: Sequence[str] = ALLOW):
    return check_stream_url(url, allowlist, resolve=resolver)


@pytest.mark.parametrize("url", ["rtsp://10.20.0.5/stream1", "RTSPS://10.20.255.255:322/x", "http://inside.lan/live.m3u8",
                                 "https://a.cams.example.com/hls/index.m3u8?token=t", "udp://10.20.1.1:5000",
                                 "rtp://192.168.1.7:5004", "srt://cam.site:9000?streamid=a", "tcp://10.20.0.1:9",
                                 "rtsp://[fd00::7]:8554/cam", "http://v6.lan/x", "rtsp://mapped.lan/x"])
def test_network_urls_inside_the_allow_list_are_accepted(url: str) -> None:
    target = check(url)
    assert target.url == url and target.scheme == url.split(":", 1)[0].lower()


@pytest.mark.parametrize(("url", "why"), [
    ("file:///etc/passwd", "not 'file'"), ("/etc/passwd", "local paths are never read"),
    ("video.mp4", "local paths"), ("concat:a|b", "local paths"), ("ftp://10.20.0.5/x", "not 'ftp'"),
    ("pipe://0", "not 'pipe'"), ("data://text/plain", "not 'data'"), ("rtsp:///stream", "host[:port]"),
    ("rtsp://10.20.0.5:99999/x", "port up to 65535"), ("rtsp://10.20.0.5/a b", "printable ASCII"),
    ("rtsp://10.20.0.5/\u00e9", "printable ASCII"), ("rtsp://10.21.0.5/x", "outside the allow-list"),
    ("rtsp://192.168.1.8/x", "outside"), ("http://outside.lan/x", "172.16.0.1, outside"),
    ("http://mixed.lan/x", "8.8.8.8, outside"), ("rtsp://nowhere.lan/x", "does not resolve"),
    ("rtsp://127.0.0.1/x", "outside"), ("rtsp://169.254.169.254/x", "outside"), ("rtsp://[::1]/x", "outside"),
    ("http://b.cams.example.com.evil.org/x", "does not resolve"), ("rtsp://" + "a" * 2100, "longer than"),
])
def test_everything_else_is_refused_with_a_reason(url: str, why: str) -> None:
    with pytest.raises(StreamRefused, match=re.escape(why)):
        check(url)


def test_a_name_that_resolves_only_inside_the_networks_is_allowed_and_one_answer_outside_refuses() -> None:
    assert check("rtsp://inside.lan/x").addresses == ("10.20.3.4",)
    with pytest.raises(StreamRefused, match=r"8\.8\.8\.8"):
        check("rtsp://mixed.lan/x")  # one address outside is enough


def test_an_empty_allow_list_turns_streams_off() -> None:
    with pytest.raises(StreamRefused, match=r"live streams are disabled.*VAD_STREAM_ALLOWLIST"):
        check("rtsp://10.20.0.5/x", [])


@pytest.mark.parametrize("url", ["rtsp://admin:hunter2@10.21.0.5/x", "rtsp://admin:hunter2@10.20.0.5:99999/x",
                                 "rtsp://admin:hunter2@nowhere.lan/x", "ftp://admin:hunter2@10.20.0.5/x"])
def test_refusals_never_quote_credentials(url: str) -> None:
    with pytest.raises(StreamRefused) as refused:
        check(url)
    assert "hunter2" not in str(refused.value) and "admin" not in str(refused.value)


def test_the_target_shows_the_url_without_credentials() -> None:
    target = check("rtsp://admin:hunter2@10.20.0.5:554/s1?password=p&channel=2")
    assert target.url == "rtsp://admin:hunter2@10.20.0.5:554/s1?password=p&channel=2"  # the worker connects with it
    assert "hunter2" not in target.display_url and "password=p" not in target.display_url
    assert display_name(None, target) == "10.20.0.5/s1"
    assert display_name("rtsp://u:pw@10.20.0.5/x", target) == "rtsp://***@10.20.0.5/x"  # a URL as a name too


def test_the_pattern_states_the_hosts_of_the_allow_list() -> None:
    pattern = url_pattern(["127.0.0.1/32", "10.1.0.0/22", "*.cams.example.com", "::1"])
    assert pattern is not None
    accepted = ["rtsp://127.0.0.1:8554/x", "RTSP://a:b@CAM1.cams.EXAMPLE.com/x", "rtsp://10.1.3.255", "udp://[::1]:5"]
    refused = ["rtsp://10.1.4.0/x", "rtsp://127.0.0.2", "file:///etc/passwd", "rtsp://127.0.0.1:65536/x",
               "ftp://127.0.0.1/x", "rtsp://127.0.0.1/a b"]
    for url in accepted:
        assert re.search(pattern, url), url
        check_stream_url(url, ["127.0.0.1/32", "10.1.0.0/22", "*.cams.example.com", "::1"],
                         resolve=lambda host, port: ["10.1.0.1"] if "cams" in host else [host])
    for url in refused:
        assert not re.search(pattern, url), url
    assert url_pattern([]) is None
    assert re.search(STREAM_URL_SYNTAX, "srt://cam.site:9000?streamid=#!:publish")


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
    target = check_stream_url(url, ["127.0.0.1/32"], resolve=lambda host, port: ["127.0.0.1"])
    for transport in ("tcp", "udp", "auto"):
        try:
            check_transport(target, transport)
            allowed = True
        except StreamRefused:
            allowed = False
        stated = all(transport not in rule["if"]["properties"]["transport"]["enum"]
                     or re.match(rule["then"]["properties"]["url"]["pattern"], url)
                     for rule in transport_schema()["allOf"])
        assert stated == allowed, (url, transport)
        assert allowed == (scheme.lower() == "rtsp" or (scheme.lower() == "rtsps" and transport != "udp"))
    check_transport(target, None)  # none asked for: the default, whatever the scheme
