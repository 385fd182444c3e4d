"""Stream a multipart upload straight to storage: chunked, counted, hashed, capped, never held in memory.

Starlette's own form parsing spools the whole body to a temporary file before a route sees it,
so a 50 GB upload would be written out before the size cap could act. Here the body is parsed
incrementally (python-multipart's push parser) as it arrives, through the checked byte stream
(:class:`~vad.storage.checked.CheckedStream`): the first bytes of the file part are held in memory and sniffed, so
a file that is not a video is refused before a byte of it reaches the storage (nor is its folder or multipart
upload begun) and the rest of its body is never read. A recognised file goes to the storage's
:class:`~vad.storage.ObjectWriter` (a local file, or a multipart upload to an object store) with a running byte
count and SHA-256, in parts of the writer's ``part_size``: the bytes held
in memory never exceed one part and one chunk. The cap is enforced on every chunk, and only a complete file is
committed. A client that stops sending for ``idle_timeout_s`` is cut off (:class:`UploadStalled`). Any failure,
a client that disconnects included, aborts the write: no partial file or object and no open multipart upload
remains. The writer's calls block on I/O, so they run in a thread and the event loop serves other requests.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header

from service.exceptions import (
    BadUpload,
    UnsupportedMedia,
    UploadStalled,
    UploadStorageUnavailable,
    UploadTooLarge,
)
from vad.exceptions import ContentTooLarge, EmptyContent, NotAVideo, StorageError, StorageUnavailable
from vad.storage import CheckedStream, ObjectWriter

FILE_FIELD = "file"
MAX_FIELD_BYTES = 64 * 1024
MULTIPART_SLACK = 64 * 1024  # boundaries, part headers and small option fields around the file

log = logging.getLogger(__name__)


@dataclass
class ReceivedUpload:
    """An upload received and committed to the storage; ``ref`` is its reference for the job record."""

    ref: str
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
    """Callbacks for the push parser: the small fields, and the file part's bytes in :attr:`pending` once its first
    bytes are sniffed; the caller moves :attr:`pending` to the storage between two chunks."""

    def __init__(self, max_bytes: int) -> None:
        self.check = CheckedStream(max_bytes, "the upload")  # only what it passes on is ever stored
        self.fields: dict[str, str] = {}
        self.pending = bytearray()  # recognised bytes not yet handed to the storage
        self.filename: str | None = None
        self.seen_file = False
        self.file_done = False
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
        self.pending.extend(self._checked(self.check.feed, chunk))

    @staticmethod
    def _checked(step: Callable[..., bytes], *args: bytes) -> bytes:
        """A step of the checked stream, its refusals in the API's terms (413, 415, 400)."""
        try:
            return step(*args)
        except ContentTooLarge as exc:
            raise UploadTooLarge(str(exc)) from exc
        except NotAVideo as exc:
            raise UnsupportedMedia(f"{exc}; the content decides, not the file name") from exc
        except EmptyContent as exc:
            raise BadUpload("the uploaded file is empty") from exc

    def _part_end(self) -> None:
        if self._part.name == FILE_FIELD:
            if self.check.size:  # what the stream still holds: a file shorter than the sniff window
                self.pending.extend(self._checked(self.check.finish))
            self.file_done = True
        elif self._part.name:
            self.fields[self._part.name] = self._part.data.decode("utf-8", "replace")


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


async def blocking(call: Callable[[], object]) -> None:
    """Run a storage call in a thread; the storage's errors become the API's (503 for an unavailable store)."""
    try:
        await asyncio.to_thread(call)
    except StorageUnavailable as exc:
        raise UploadStorageUnavailable(f"{exc}; send the upload again later") from exc
    except StorageError as exc:
        raise UploadStorageUnavailable(f"the upload could not be stored: {exc}") from exc


async def discard(writer: ObjectWriter) -> None:
    """Abort ``writer`` (a partial or a committed upload) whatever happens to the request meanwhile; never raises:
    what cannot be removed now is left to the supervisor's sweep, and logged."""
    try:
        await asyncio.shield(asyncio.to_thread(writer.abort))
    except (StorageError, OSError) as exc:
        log.warning("an upload could not be removed now (the sweep removes it later): %s", exc)


class _Flow:
    """Moves the receiver's recognised bytes to the writer: opens it once the head is recognised, then writes
    whole parts; ``finish`` writes the rest and commits."""

    def __init__(self, receiver: _Receiver, writer: ObjectWriter) -> None:
        self.receiver, self.writer = receiver, writer
        self.opened = False

    async def drain(self) -> None:
        if not self.receiver.check.recognised:
            return
        if not self.opened:
            self.opened = True  # before the call: a request cancelled during it still aborts what it began
            await blocking(self.writer.open)
        if len(self.receiver.pending) >= self.writer.part_size:
            await self._write()

    async def _write(self) -> None:
        data, self.receiver.pending = self.receiver.pending, bytearray()  # handed over, not copied
        await blocking(lambda: self.writer.write(data))

    async def finish(self) -> str:
        await self.drain()
        if self.receiver.pending:
            await self._write()
        ref: list[str] = []
        await blocking(lambda: ref.append(self.writer.commit()))
        return ref[0]


async def receive_upload(
    body: AsyncIterator[bytes], boundary: bytes, writer: ObjectWriter, max_bytes: int,
    idle_timeout_s: float | None = None,
) -> tuple[ReceivedUpload, dict[str, str]]:
    """Stream ``body`` into ``writer``; returns the stored upload and the small form fields.

    The writer is opened only once the file's first bytes are recognised as a video. On any error (a non-video,
    the size cap, ``idle_timeout_s`` seconds without data, a disconnect, the storage failing) reading stops at
    once, the write is aborted and the error re-raised.
    """
    receiver = _Receiver(max_bytes)
    parser = MultipartParser(boundary, receiver.callbacks())  # type: ignore[arg-type]
    flow = _Flow(receiver, writer)
    chunks = _paced(body, idle_timeout_s)
    try:
        try:
            async for chunk in chunks:
                parser.write(chunk)
                await flow.drain()
            parser.finalize()
        except MultipartParseError as exc:
            raise BadUpload(f"malformed multipart body: {exc}") from exc
        if parser.state != MultipartState.END:
            raise BadUpload("the multipart body ended early (incomplete upload)")
        if not receiver.seen_file:
            raise BadUpload(f"no '{FILE_FIELD}' part in the upload")
        if receiver.check.size == 0 or receiver.check.container is None:
            raise BadUpload("the uploaded file is empty")
        container = receiver.check.container
        ref = await flow.finish()
    except BaseException:
        if flow.opened:
            await discard(writer)
        raise
    finally:
        await chunks.aclose()
    stored = ReceivedUpload(ref=ref, size=receiver.check.size, sha256=receiver.check.sha256, container=container,
                          filename=display_name(receiver.filename))
    return stored, receiver.fields
