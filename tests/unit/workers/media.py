"""Helpers that damage video files the way uploads get damaged."""

from __future__ import annotations

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
