"""The streaming multipart receiver on its own."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from service.exceptions import BadUpload, UnsupportedMedia, UploadStalled, UploadTooLarge
from service.upload import check_request, display_name, receive_upload
from tests.unit.service.conftest import mp4_bytes
from vad.storage import LocalWriter

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
    return asyncio.run(receive_upload(chunks(data), BOUNDARY, LocalWriter(directory), max_bytes))


def test_streams_the_file_with_size_and_sha256(tmp_path: Path) -> None:
    video = mp4_bytes(50_000)
    stored, fields = run(body([("threshold", None, b"0.7"), ("file", "../../etc/pass wd.mp4", video),
                               ("frame_scores", None, b"true")]), tmp_path)
    assert stored.ref == str(tmp_path / "video") and (tmp_path / "video").read_bytes() == video
    assert stored.size == len(video) and stored.sha256 == hashlib.sha256(video).hexdigest()
    assert stored.container == "mp4" and stored.filename == "pass wd.mp4"
    assert fields == {"threshold": "0.7", "frame_scores": "true"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["video"]


def test_cap_is_enforced_while_streaming(tmp_path: Path) -> None:
    with pytest.raises(UploadTooLarge):
        run(body([("file", "big.mp4", mp4_bytes(20_000))]), tmp_path, max_bytes=10_000)
    assert not tmp_path.exists()  # the partial file is gone, and the job's folder with it


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


def _file_part_head(filename: str = "a.bin") -> bytes:
    return (b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="file"; filename="' + filename.encode()
            + b'"\r\n\r\n')


def test_a_non_video_is_refused_on_its_first_bytes_and_never_reaches_the_disk(tmp_path: Path) -> None:
    sent = 0
    chunk = b"this is a text file, not a video; " * 1928  # ~64 KiB

    async def ten_megabytes() -> AsyncIterator[bytes]:
        nonlocal sent
        yield _file_part_head()
        while sent < 10 * 1024 * 1024:
            sent += len(chunk)
            yield chunk

    directory = tmp_path / "job"
    with pytest.raises(UnsupportedMedia, match="not a recognised"):
        asyncio.run(receive_upload(ten_megabytes(), BOUNDARY, LocalWriter(directory), 1 << 30))
    assert sent == len(chunk)  # the first chunk decided; nothing more was read
    assert not directory.exists()  # not even the job's folder was created


def test_a_small_non_video_in_small_chunks_is_refused_before_its_end(tmp_path: Path) -> None:
    data = _file_part_head() + b"x" * 20_000 + b"\r\n--" + BOUNDARY + b"--\r\n"
    read = 0

    async def trickle() -> AsyncIterator[bytes]:
        nonlocal read
        for i in range(0, len(data), 100):
            read = i + 100
            yield data[i:i + 100]

    with pytest.raises(UnsupportedMedia):
        asyncio.run(receive_upload(trickle(), BOUNDARY, LocalWriter(tmp_path / "job"), 1 << 20))
    assert read <= len(_file_part_head()) + 4096 + 100  # SNIFF_BYTES of the file, one chunk late at most
    assert not (tmp_path / "job").exists()


def test_a_video_shorter_than_the_sniff_window_is_accepted(tmp_path: Path) -> None:
    video = mp4_bytes(100)
    stored, _ = run(body([("file", "small.mp4", video)]), tmp_path)
    assert Path(stored.ref).read_bytes() == video and stored.container == "mp4"


def test_a_stalled_body_is_cut_off_after_the_idle_timeout(tmp_path: Path) -> None:
    async def stalls() -> AsyncIterator[bytes]:
        yield _file_part_head("a.mp4") + mp4_bytes(8000)
        await asyncio.sleep(30)  # the client stops sending but keeps the connection open
        yield b""

    async def main() -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(UploadStalled, match=r"no data for 0\.3 s"):
            await receive_upload(stalls(), BOUNDARY, LocalWriter(tmp_path / "job"), 1 << 20, idle_timeout_s=0.3)
        return loop.time() - start

    assert asyncio.run(main()) < 5
    assert not (tmp_path / "job" / "upload.partial").exists() and not (tmp_path / "job" / "video").exists()
