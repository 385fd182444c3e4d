"""Helpers that damage video files the way uploads get damaged."""

from __future__ import annotations

import random
from pathlib import Path


def cut(src: Path, dst: Path, size: int) -> Path:
    """Copy the first ``size`` bytes of ``src`` to ``dst`` (a truncated upload)."""
    dst.write_bytes(src.read_bytes()[:size])
    return dst


def mdat_offset(path: Path) -> int:
    """Byte offset where the media data box of an MP4 starts."""
    offset = path.read_bytes().find(b"mdat")
    assert offset > 0, f"{path} has no mdat box"
    return offset - 4


def scramble(src: Path, dst: Path, at: float, size: int = 400, seed: int = 0) -> Path:
    """Copy ``src`` to ``dst`` with ``size`` random bytes written over its media data at fraction ``at`` of it
    (bit rot or a bad transfer in the middle of a file whose index is intact)."""
    data = bytearray(src.read_bytes())
    start = mdat_offset(src) + 8
    end = data.find(b"moov") if data.find(b"moov") > start else len(data)
    offset = start + int((end - start) * at)
    data[offset : offset + size] = random.Random(seed).randbytes(size)
    dst.write_bytes(bytes(data))
    return dst
