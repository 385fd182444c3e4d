"""The policy as each caller applies it: stream URLs (schemes, local paths, the allow-list of networks and names,
DNS answers outside it, credentials never in a message, the URL pattern the OpenAPI document states), callback URLs
(resolution pinned, internal addresses)."""

from __future__ import annotations

import re
import socket
from collections.abc import Sequence
from typing import Any

import pytest

from vad.exceptions import CallbackRefused, StreamRefused
from vad.net.patterns import STREAM_URL_SYNTAX, url_pattern
from vad.net.rules import check_callback_url, check_stream_url, display_name, resolve_callback

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
    ("rtsp://10.20.0.5/\u00e9", "printable ASCII"), ("rtsp://10.21.0.5/x", "not in the allow-list"),
    ("rtsp://192.168.1.8/x", "not in the allow-list"), ("http://outside.lan/x", "172.16.0.1, outside"),
    ("http://mixed.lan/x", "8.8.8.8, outside"), ("rtsp://nowhere.lan/x", "does not resolve"),
    ("rtsp://127.0.0.1/x", "not in the allow-list"), ("rtsp://169.254.169.254/x", "cloud metadata"),
    ("rtsp://[::1]/x", "not in the allow-list"),
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


def test_resolution_pins_every_checked_address(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = {"public.example": ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"],
               "mixed.example": ["93.184.215.14", "10.0.0.5"]}

    def getaddrinfo(host: str, port: int, *args: Any, **kwargs: Any) -> list[Any]:
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
                for a in answers[host]]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    target = resolve_callback("https://Public.example/h?x=1", ["*.example"])
    assert (target.scheme, target.host, target.port, target.target) == ("https", "public.example", 443, "/h?x=1")
    assert target.addresses == tuple(answers["public.example"])
    with pytest.raises(CallbackRefused, match=r"internal address\(es\) 10\.0\.0\.5"):
        resolve_callback("http://mixed.example/h", ["*.example"])  # one internal address is enough to refuse
    assert resolve_callback("http://mixed.example:8080", ["*.example"], allow_private=True).port == 8080
    assert check_callback_url("http://mixed.example/h", ["*.example"], resolve=False) == "http://mixed.example/h"
    with pytest.raises(CallbackRefused, match="port"):
        check_callback_url("http://mixed.example:99999/h", ["*.example"])


def test_the_reader_connects_to_the_checked_address_unless_the_name_is_listed() -> None:
    from vad.net.rules import connect_url

    by_address = check("rtsp://admin:pw@inside.lan:8554/s?token=t")  # allowed for where it resolved to: pinned
    assert not by_address.named and connect_url(by_address) == "rtsp://admin:pw@10.20.3.4:8554/s?token=t"
    assert connect_url(check("rtsp://v6.lan/x")) == "rtsp://[fd00::7]/x"
    named = check("srt://cam.site:9000?streamid=a")  # the operator listed the name: kept (TLS, virtual hosts)
    assert named.named and connect_url(named) == "srt://cam.site:9000?streamid=a"
    assert connect_url(check("rtsp://10.20.0.5/x")) == "rtsp://10.20.0.5/x"
