"""redact_url / redact_text: camera URLs are shown without their credentials."""

from __future__ import annotations

import pytest

from vad.net.redact import redact_text, redact_url, url_scheme


@pytest.mark.parametrize(("url", "shown"), [
    ("rtsp://admin:hunter2@10.0.0.7:554/stream1", "rtsp://***@10.0.0.7:554/stream1"),
    ("rtsps://user@cam.example/live", "rtsps://***@cam.example/live"),
    ("rtsp://a:p@ss@cam/x", "rtsp://***@cam/x"),  # '@' in the password: the host is after the last one
    ("https://cdn.example/live.m3u8?token=abc&quality=hd", "https://cdn.example/live.m3u8?token=***&quality=hd"),
    ("https://s3/x.m3u8?X-Amz-Signature=f00&X-Amz-Credential=k", "https://s3/x.m3u8?X-Amz-Signature=***&"
                                                                 "X-Amz-Credential=***"),
    ("rtsp://cam/onvif?user=admin&password=secret&channel=1", "rtsp://cam/onvif?user=***&password=***&channel=1"),
    ("udp://239.0.0.1:1234", "udp://239.0.0.1:1234"),
    ("srt://host:9000?mode=caller&passphrase=secret", "srt://host:9000?mode=caller&passphrase=***"),
    ("/videos/cam.mp4", "/videos/cam.mp4"),
    ("rtsp://u:p@[::1:bad/x", "rtsp://***@[::1:bad/x"),  # not parseable: the credentials go anyway
])
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert "hunter2" not in redact_url(url) and "secret" not in redact_url(url)


def test_redact_text_removes_credentials_from_error_messages() -> None:
    url = "rtsp://admin:hunter2@10.0.0.7/s?token=abc"
    text = f"cannot open {url}: Connection refused (also tried rtsp://x:y@backup/s)"
    assert redact_text(text, url) == ("cannot open rtsp://***@10.0.0.7/s?token=***: Connection refused (also tried "
                                      "rtsp://***@backup/s)")


def test_url_scheme() -> None:
    assert url_scheme("RTSP://cam/x") == "rtsp" and url_scheme("clip.mp4") == "file"
