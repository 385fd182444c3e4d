from __future__ import annotations

import pytest

from vad.storage.sniff import sniff_container


@pytest.mark.parametrize(("head", "expected"), [
    (b"\x00\x00\x00\x20ftypisom" + bytes(100), "mp4"),
    (b"\x00\x00\x00\x14ftypqt  " + bytes(100), "mp4"),
    (b"\x00\x00\x00\x08moov" + bytes(100), "mp4"),
    (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm" + bytes(50), "webm"),
    (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x88matroska" + bytes(50), "matroska"),
    (b"RIFF\x00\x10\x00\x00AVI LIST" + bytes(100), "avi"),
    (b"FLV\x01\x05" + bytes(100), "flv"),
    (b"OggS\x00\x02" + bytes(100), "ogg"),
    (b"\x30\x26\xb2\x75\x8e\x66\xcf\x11\xa6\xd9" + bytes(100), "asf"),
    (b"\x00\x00\x01\xba\x44" + bytes(100), "mpeg-ps"),
    ((b"\x47" + bytes(187)) * 5, "mpeg-ts"),
    ((bytes(4) + b"\x47" + bytes(187)) * 5, "mpeg-ts"),
])
def test_recognised_containers(head: bytes, expected: str) -> None:
    assert sniff_container(head) == expected


@pytest.mark.parametrize("head", [
    b"", b"hello world, this is text", b"%PDF-1.7\n" + bytes(100), b"\x89PNG\r\n\x1a\n" + bytes(100),
    b"RIFF\x00\x10\x00\x00WAVEfmt " + bytes(100), b"ID3\x04" + bytes(100), b"\x47" + bytes(10),
])
def test_other_bytes_are_not_videos(head: bytes) -> None:
    assert sniff_container(head) is None
