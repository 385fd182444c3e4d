"""The one checked byte stream: capped, hashed, its first bytes held back until they are recognised as a video, and
nothing of a non-video passed on."""

from __future__ import annotations

import hashlib

import pytest

from vad.exceptions import ContentTooLarge, EmptyContent, NotAVideo
from vad.storage.checked import CheckedStream
from vad.storage.sniff import SNIFF_BYTES

MP4 = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + bytes(range(256)) * 40


def run(check: CheckedStream, data: bytes, chunk: int) -> bytes:
    passed = b"".join(check.feed(data[i:i + chunk]) for i in range(0, len(data), chunk))
    return passed + check.finish()


@pytest.mark.parametrize("chunk", [1, 100, SNIFF_BYTES - 1, SNIFF_BYTES, 1 << 20])
def test_a_video_passes_whole_and_hashed_whatever_the_chunks(chunk: int) -> None:
    check = CheckedStream(len(MP4))
    assert run(check, MP4, chunk) == MP4
    assert (check.size, check.sha256, check.container) == (len(MP4), hashlib.sha256(MP4).hexdigest(), "mp4")


def test_nothing_passes_until_the_head_is_recognised() -> None:
    check = CheckedStream(len(MP4))
    assert check.feed(MP4[:SNIFF_BYTES - 1]) == b"" and not check.recognised
    assert check.feed(MP4[SNIFF_BYTES - 1:SNIFF_BYTES + 9]) == MP4[:SNIFF_BYTES + 9] and check.recognised
    short = CheckedStream(100)
    assert short.feed(MP4[:40]) == b"" and short.finish() == MP4[:40]  # shorter than the sniff window


def test_refusals_say_why_and_pass_nothing_on() -> None:
    with pytest.raises(NotAVideo, match="the source x is not a recognised video container"):
        run(CheckedStream(1 << 20, "the source x"), b"just text " * 1000, 512)
    with pytest.raises(NotAVideo):
        run(CheckedStream(100), b"text", 4)
    with pytest.raises(ContentTooLarge, match="larger than the limit of 5000 bytes"):
        run(CheckedStream(5000), MP4 + MP4, 4096)
    with pytest.raises(EmptyContent, match="the upload is empty"):
        CheckedStream(10).finish()


def test_without_sniffing_bytes_pass_at_once() -> None:
    check = CheckedStream(10, sniff=False)
    assert check.feed(b"abc") == b"abc" and check.finish() == b"" and check.size == 3
