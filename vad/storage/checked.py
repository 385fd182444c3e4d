"""The one checked byte stream: every video the service stores or fetches passes through it, whatever it comes from
(a multipart upload in the API, a source URL or an object in a worker).

As the bytes pass, :class:`CheckedStream` counts them against a size cap, hashes them (SHA-256) and holds the first
:data:`~vad.storage.sniff.SNIFF_BYTES` back until they are recognised as a video container: a file that is not a video
is refused before a byte of it is passed on, and one over the cap as soon as the cap is crossed. Its refusals are
:class:`~vad.exceptions.ContentRefused` subclasses; each caller turns them into its own answer.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import BinaryIO

from vad.exceptions import ContentTooLarge, EmptyContent, NotAVideo, StorageError
from vad.storage.base import READ_CHUNK
from vad.storage.sniff import SNIFF_BYTES, sniff_container

CONTAINERS = "mp4/mov, mkv/webm, avi, mpeg-ts/ps, flv, ogg, asf"
"""What :func:`~vad.storage.sniff.sniff_container` recognises, for messages."""


class CheckedStream:
    """Bytes checked as they pass: at most ``max_bytes``, hashed, and (with ``sniff``) held back until their first
    bytes are recognised as a video container.

    Feed it chunks (:meth:`feed`), pass on what it returns, and pass on what :meth:`finish` returns at the end.

    Args:
        max_bytes: The size cap.
        what: How messages name the bytes (``the upload``, ``the source https://…``).
        sniff: Whether to hold the first bytes until they are recognised (off for bytes already checked once, such
            as a stored upload read back).

    Raises:
        ContentTooLarge: From :meth:`feed`, once more than ``max_bytes`` arrived.
        NotAVideo: From :meth:`feed` or :meth:`finish`, when the first bytes are not a recognised container.
        EmptyContent: From :meth:`finish`, when nothing arrived.
    """

    def __init__(self, max_bytes: int, what: str = "the upload", sniff: bool = True) -> None:
        self.max_bytes, self.what = max_bytes, what
        self.size = 0
        self.container: str | None = None if sniff else ""
        self._sha = hashlib.sha256()
        self._head = bytearray()

    @property
    def sha256(self) -> str:
        """The hex SHA-256 of every byte fed so far."""
        return self._sha.hexdigest()

    @property
    def recognised(self) -> bool:
        """Whether bytes are passed on now (the head was recognised, or nothing is sniffed)."""
        return self.container is not None

    def feed(self, chunk: bytes | bytearray | memoryview) -> bytes:
        """Check ``chunk``; the bytes that may be passed on now (none while the head is held back)."""
        self.size += len(chunk)
        if self.size > self.max_bytes:
            raise ContentTooLarge(f"{self.what} is larger than the limit of {self.max_bytes} bytes")
        self._sha.update(chunk)
        if self.container is not None:
            return bytes(chunk)
        self._head.extend(chunk)
        return self._recognise() if len(self._head) >= SNIFF_BYTES else b""

    def finish(self) -> bytes:
        """The bytes still held back (a file shorter than the sniff window is recognised now)."""
        if self.size == 0:
            raise EmptyContent(f"{self.what} is empty")
        return self._recognise() if self.container is None else b""

    def _recognise(self) -> bytes:
        container = sniff_container(bytes(self._head[:SNIFF_BYTES]))
        if container is None:
            raise NotAVideo(f"{self.what} is not a recognised video container ({CONTAINERS})")
        self.container = container
        head, self._head = bytes(self._head), bytearray()
        return head


def copy_checked(source: BinaryIO, dest: Path, max_bytes: int, sha256: str = "", what: str = "the upload") -> str:
    """Copy ``source`` to ``dest`` in chunks, at most ``max_bytes``; the SHA-256 of what was copied, which must equal
    ``sha256`` when given (a stored upload read back: its container was sniffed when it was stored).

    Raises:
        StorageError: Too large, or not the bytes that were stored.
    """
    check = CheckedStream(max_bytes, what, sniff=False)
    with open(dest, "wb") as out:
        try:
            while chunk := source.read(READ_CHUNK):
                out.write(check.feed(chunk))
        except ContentTooLarge as exc:
            raise StorageError(str(exc)) from exc
    if sha256 and check.sha256 != sha256:
        raise StorageError(f"{what} read back does not match its SHA-256 (stored {check.size} bytes); upload it again")
    return check.sha256
