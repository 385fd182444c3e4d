"""The streaming multipart receiver on its own."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from service.exceptions import BadUpload, UnsupportedMedia, UploadTooLarge
from service.upload import check_request, display_name, receive_upload
from tests.unit.service.conftest import mp4_bytes

BOUNDARY = b"----vadtestboundary"


def body(parts: list[tuple[str, str | None, bytes]], close: bool = True) -> bytes:
    out = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        out += b"--" + BOUNDARY + b"\r\nContent-Disposition: " + disposition.encode() + b"\r\n\r\n" + data + b"\r\n"
    return out + (b"--" + BOUNDARY + b"--\r\n" if close else b"")


async def chunks(data: bytes, size: int = 1000) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i:i + size]


def run(data: bytes, directory: Path, max_bytes: int = 1 << 20):
    return asyncio.run(receive_upload(chunks(data), BOUNDARY, directory, max_bytes))


def test_streams_the_file_with_size_and_sha256(tmp_path: Path) -> None:
    video = mp4_bytes(50_000)
    stored, fields = run(body([("threshold", None, b"0.7"), ("file", "../../etc/pass wd.mp4", video),
                               ("frame_scores", None, b"true")]), tmp_path)
    assert stored.path == tmp_path / "video" and stored.path.read_bytes() == video
    assert stored.size == len(video) and stored.sha256 == hashlib.sha256(video).hexdigest()
    assert stored.container == "mp4" and stored.filename == "pass wd.mp4"
    assert fields == {"threshold": "0.7", "frame_scores": "true"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["video"]


def test_cap_is_enforced_while_streaming(tmp_path: Path) -> None:
    with pytest.raises(UploadTooLarge):
        run(body([("file", "big.mp4", mp4_bytes(20_000))]), tmp_path, max_bytes=10_000)
    assert list(tmp_path.iterdir()) == []  # the partial file is gone


@pytest.mark.parametrize(("data", "error", "message"), [
    (body([("file", "a.txt", b"just some text, not a video at all" * 10)]), UnsupportedMedia, "not a recognised"),
    (body([("threshold", None, b"0.5")]), BadUpload, "no 'file' part"),
    (body([("file", "a.mp4", b"")]), BadUpload, "empty"),
    (body([("file", "a.mp4", mp4_bytes(100)), ("file", "b.mp4", mp4_bytes(100))]), BadUpload, "exactly one"),
    (body([("file", "a.mp4", mp4_bytes(5000))], close=False), BadUpload, "ended early"),
    (body([("note", None, b"x" * 70_000), ("file", "a.mp4", mp4_bytes(100))]), BadUpload, "larger than"),
])
def test_bad_uploads(tmp_path: Path, data: bytes, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        run(data, tmp_path)
    assert not (tmp_path / "video").exists() and not (tmp_path / "upload.partial").exists()


def test_headers_are_checked_before_reading() -> None:
    ctype = f"multipart/form-data; boundary={BOUNDARY.decode()}"
    assert check_request(ctype, "1000", 10_000) == BOUNDARY
    with pytest.raises(UploadTooLarge):
        check_request(ctype, str(10_000_000), 10_000)
    with pytest.raises(UnsupportedMedia):
        check_request("video/mp4", "1000", 10_000)
    with pytest.raises(BadUpload):
        check_request(ctype, "many", 10_000)


@pytest.mark.parametrize(("raw", "expected"), [
    (None, "video"), ("clip.mp4", "clip.mp4"), ("C:\\Users\\me\\cam 1.mov", "cam 1.mov"),
    ("../../x/..", "video"), ("a;rm -rf *.mp4", "a_rm -rf _.mp4"), ("x" * 300, "x" * 200),
])
def test_display_names_are_never_paths(raw: str | None, expected: str) -> None:
    assert display_name(raw) == expected
