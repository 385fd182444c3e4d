"""Stream a multipart upload straight to storage: chunked, counted, hashed, capped, never held in memory.

Starlette's own form parsing spools the whole body to a temporary file before a route sees it,
so a 50 GB upload would be written out before the size cap could act. Here the body is parsed
incrementally (python-multipart's push parser) as it arrives: the first :data:`SNIFF_BYTES` of the
file part are held in memory and sniffed, so a file that is not a video is refused before a byte of
it reaches the disk (nor is its folder created) and the rest of its body is never read. A recognised
file goes to ``<dir>/upload.partial`` with a running byte count and SHA-256, the cap is enforced on
every chunk, and only a complete file is renamed to its final name. A client that stops sending for
``idle_timeout_s`` is cut off (:class:`UploadStalled`).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header

from service.exceptions import BadUpload, UnsupportedMedia, UploadStalled, UploadTooLarge
from service.sniff import SNIFF_BYTES, sniff_container

FILE_FIELD = "file"
MAX_FIELD_BYTES = 64 * 1024
MULTIPART_SLACK = 64 * 1024  # boundaries, part headers and small option fields around the file


@dataclass
class StoredUpload:
    """A complete upload on disk."""

    path: Path
    size: int
    sha256: str
    container: str
    filename: str


@dataclass
class _Part:
    name: str = ""
    filename: str | None = None
    data: bytearray = field(default_factory=bytearray)


def display_name(raw: str | None) -> str:
    """A safe display name from the client's file name (never used as a path)."""
    name = (raw or "video").replace("\\", "/").rsplit("/", 1)[-1]
    name = re.sub(r"[^\w.\- ()\[\]]", "_", name).strip(" .")
    return name[:200] or "video"


class _Receiver:
    """Callbacks for the push parser; writes the file part to ``partial`` once its first bytes are sniffed."""

    def __init__(self, partial: Path, max_bytes: int) -> None:
        self.partial, self.max_bytes = partial, max_bytes
        self.fields: dict[str, str] = {}
        self.file: BinaryIO | None = None
        self.size, self.sha = 0, hashlib.sha256()
        self.head = bytearray()  # the file's first bytes, held until they are sniffed
        self.container: str | None = None  # set once the head is recognised; only then is anything written
        self.filename: str | None = None
        self.seen_file = False
        self._part = _Part()
        self._header_name = bytearray()
        self._header_value = bytearray()

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self._part_begin, "on_part_data": self._part_data, "on_part_end": self._part_end,
            "on_header_field": lambda d, s, e: self._header_name.extend(d[s:e]),
            "on_header_value": lambda d, s, e: self._header_value.extend(d[s:e]),
            "on_header_end": self._header_end, "on_headers_finished": self._headers_finished,
        }

    def _part_begin(self) -> None:
        self._part = _Part()

    def _header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            _, params = parse_options_header(bytes(self._header_value))
            self._part.name = params.get(b"name", b"").decode("utf-8", "replace")
            raw = params.get(b"filename")
            self._part.filename = raw.decode("utf-8", "replace") if raw is not None else None
        self._header_name.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        if self._part.name == FILE_FIELD:
            if self.seen_file:
                raise BadUpload(f"send exactly one '{FILE_FIELD}' part")
            self.seen_file, self.filename = True, self._part.filename

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self._part.name != FILE_FIELD:
            self._part.data.extend(chunk)
            if len(self._part.data) > MAX_FIELD_BYTES:
                raise BadUpload(f"form field {self._part.name!r} is larger than {MAX_FIELD_BYTES} bytes")
            return
        self.size += len(chunk)
        if self.size > self.max_bytes:
            raise UploadTooLarge(f"the upload exceeds the limit of {self.max_bytes} bytes")
        self.sha.update(chunk)
        if self.container is None:
            self.head.extend(chunk)
            if len(self.head) >= SNIFF_BYTES:
                self._accept()
            return
        assert self.file is not None
        self.file.write(chunk)

    def _accept(self) -> None:
        """Sniff the held first bytes: refuse a non-video now, else open the partial file and write them."""
        container = sniff_container(bytes(self.head[:SNIFF_BYTES]))
        if container is None:
            raise UnsupportedMedia("the upload is not a recognised video container (mp4/mov, mkv/webm, avi, "
                                   "mpeg-ts/ps, flv, ogg, asf); the content decides, not the file name")
        self.container = container
        self.partial.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self.partial, "wb")  # noqa: SIM115 - closed in _part_end / close()
        self.file.write(self.head)
        self.head.clear()

    def _part_end(self) -> None:
        if self._part.name == FILE_FIELD:
            if self.container is None and self.size:  # a file shorter than the sniff window
                self._accept()
            self.close()
        elif self._part.name:
            self.fields[self._part.name] = self._part.data.decode("utf-8", "replace")

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


def check_request(content_type: str | None, content_length: str | None, max_bytes: int) -> bytes:
    """Validate the headers before reading a byte; return the multipart boundary."""
    ctype, params = parse_options_header((content_type or "").encode("latin-1"))
    if ctype != b"multipart/form-data" or b"boundary" not in params:
        raise UnsupportedMedia(f"send the video as multipart/form-data with a '{FILE_FIELD}' field")
    if content_length is not None:
        try:
            declared = int(content_length)
        except ValueError as exc:
            raise BadUpload("invalid Content-Length header") from exc
        if declared > max_bytes + MULTIPART_SLACK:
            raise UploadTooLarge(f"Content-Length {declared} exceeds the limit of {max_bytes} bytes")
    return params[b"boundary"]


async def _paced(body: AsyncIterator[bytes], idle_timeout_s: float | None) -> AsyncGenerator[bytes, None]:
    """The chunks of ``body``; :class:`UploadStalled` when none arrives for ``idle_timeout_s`` seconds."""
    chunks = aiter(body)
    while True:
        try:
            async with asyncio.timeout(idle_timeout_s):  # per chunk: a slow but live upload is never cut off
                chunk = await anext(chunks)
        except StopAsyncIteration:
            return
        except TimeoutError as exc:
            raise UploadStalled(f"no data for {idle_timeout_s:g} s: the upload stalled and was cut off; "
                                "send it again") from exc
        yield chunk


async def receive_upload(
    body: AsyncIterator[bytes], boundary: bytes, directory: Path, max_bytes: int, idle_timeout_s: float | None = None
) -> tuple[StoredUpload, dict[str, str]]:
    """Stream ``body`` into ``directory/video``; returns the stored upload and the small form fields.

    ``directory`` is created only once the file's first bytes are recognised as a video. On any error
    (a non-video, the size cap, ``idle_timeout_s`` seconds without data) reading stops at once, the
    partial file is removed and the error re-raised.
    """
    partial = directory / "upload.partial"
    receiver = _Receiver(partial, max_bytes)
    parser = MultipartParser(boundary, receiver.callbacks())  # type: ignore[arg-type]
    chunks = _paced(body, idle_timeout_s)
    try:
        try:
            async for chunk in chunks:
                parser.write(chunk)
            parser.finalize()
        except MultipartParseError as exc:
            raise BadUpload(f"malformed multipart body: {exc}") from exc
        if parser.state != MultipartState.END:
            raise BadUpload("the multipart body ended early (incomplete upload)")
        receiver.close()
        if not receiver.seen_file:
            raise BadUpload(f"no '{FILE_FIELD}' part in the upload")
        if receiver.size == 0 or receiver.container is None:
            raise BadUpload("the uploaded file is empty")
        container = receiver.container
        final = directory / "video"
        partial.replace(final)
    except Exception:
        receiver.close()
        partial.unlink(missing_ok=True)
        raise
    finally:
        await chunks.aclose()
    stored = StoredUpload(path=final, size=receiver.size, sha256=receiver.sha.hexdigest(), container=container,
                          filename=display_name(receiver.filename))
    return stored, receiver.fields
