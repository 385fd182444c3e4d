"""Helpers of the API's unit tests (the API on a real Redis: tests/integration/service/)."""

from __future__ import annotations


def mp4_bytes(size: int = 4096, seed: int = 0) -> bytes:
    """Bytes that start like an MP4 (an ftyp box); the API only sniffs, the workers decode."""
    import random

    rng = random.Random(seed)
    return b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + bytes(rng.getrandbits(8) for _ in range(size))
