"""Streaming snippet extraction: ``iter_snippets(path)`` yields bounded batches of snippet frames.

Backends: ``'pyav'`` (sequential), ``'torchcodec'`` (random access, PyTorch's maintained decoder),
``'decord'`` (random access, unmaintained since 2021) and ``'auto'``: the installed ones, fastest first
(:data:`AUTO_ORDER`), each one that fails on the file handing over to the next; a hand-over resumes at
the snippet where the previous backend stopped, so no snippet is yielded twice.

Memory is bounded by the batch, never by the video: a batch holds at most ``batch_size`` snippets
(fewer when ``max_batch_bytes`` says so); besides the batch it yields, the stream holds the snippets of
the next batch being filled and, with a random-access backend, the chunk of frames it was read from
(about 3 batches).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Generator, Iterator
from pathlib import Path
from types import TracebackType
from typing import Literal

from workers.exceptions import DecoderFailure, DecoderUnavailable, VideoError
from workers.video.batch import DecodeReport, SnippetBatch
from workers.video.budget import DecodeBudget
from workers.video.decord_source import DecordSource, import_decord
from workers.video.frame_source import FrameSource
from workers.video.plan import FramePick, Snippet, SnippetPlan
from workers.video.probe import MAX_PIXELS, VideoInfo, probe_within
from workers.video.pyav_source import PyAVSource
from workers.video.torchcodec_source import TorchCodecSource, import_torchcodec

logger = logging.getLogger(__name__)

Backend = Literal["auto", "pyav", "torchcodec", "decord"]

_SOURCES: dict[str, type[FrameSource]] = {"pyav": PyAVSource, "torchcodec": TorchCodecSource, "decord": DecordSource}

AUTO_ORDER = ("pyav", "torchcodec", "decord")
"""The order ``'auto'`` tries the backends in: fastest first, as measured by ``bench/pipeline.py --decoders``.

The ``'middle'`` frame of each snippet of H.264 videos (testsrc2 with noise, 30 fps, ~1.8 Mbit/s at 720p),
best of 5 runs in turns on 2 x86_64 cores that other jobs kept busy (load ~10), PyAV = 1:

=============================  ====================  ====================
video, decoder threads         torchcodec fps / CPU  decord fps / CPU
=============================  ====================  ====================
720p (600 frames), auto        0.78x / 1.02x         0.66x / 1.17x
720p (600 frames), 1 thread    1.07x / 1.05x         0.84x / 1.24x
360p (1800 frames), auto       0.58x / 1.00x         0.69x / 1.08x
360p (1800 frames), 1 thread   1.02x / 0.96x         0.94x / 1.11x
=============================  ====================  ====================

All three run FFmpeg's H.264 decoder over every frame, so the CPU time per frame is within a few percent,
except decord's (8-24% more, like issue 13's 30-minute 360p video: 1.29x PyAV's wall time, 1.42x its
CPU). With the library's threads (the worker's default), PyAV's frame-threaded decoding is the fastest
by far; torchcodec gains little from threads when it reads frames by index. PyAV, also the most tolerant
of damage, comes first; torchcodec, faster than decord, second; decord last.
"""


def available_backends() -> tuple[str, ...]:
    """Backends usable in this environment, in the order ``'auto'`` tries them (:data:`AUTO_ORDER`)."""
    return tuple(name for name in AUTO_ORDER if _installed(name))


def _installed(name: str) -> bool:
    if name == "torchcodec":
        return import_torchcodec() is not None
    if name == "decord":
        return import_decord() is not None
    return True


class SnippetStream(Iterator[SnippetBatch]):
    """Iterator over the :class:`SnippetBatch` es of one video; made by :func:`iter_snippets`.

    ``next()`` raises :class:`~workers.exceptions.VideoError` (damage found mid-file that no backend
    could get past), :class:`~workers.exceptions.DecodeTimeout` or :class:`~workers.exceptions.DecodeCancelled`.

    Attributes:
        info: The probed video.
        plan: Snippet length, frame pick and tail rule.
        batch_size: Snippets per batch actually used (``batch_size`` capped by ``max_batch_bytes``).
        backend: The backend decoding now (the one that finished, once exhausted).
        fallback_from: The backend ``'auto'`` last left for the next one, or ``None``.
        fallback_reason: Why it gave up, or ``None``.
        decoded_frames: Frames the video really has; ``None`` until the stream is exhausted.
    """

    def __init__(
        self,
        info: VideoInfo,
        plan: SnippetPlan,
        backends: tuple[str, ...],
        batch_size: int,
        budget: DecodeBudget,
        threads: int = 0,
    ) -> None:
        self.info = info
        self.plan = plan
        self.batch_size = batch_size
        self.backend = backends[0]
        self.fallback_from: str | None = None
        self.fallback_reason: str | None = None
        self.decoded_frames: int | None = None
        self.snippets_yielded = 0
        self._backends = backends
        self._budget = budget
        self._threads = threads
        self._source: FrameSource | None = None
        self._next_index = 0
        self._batches = self._generate()

    def __iter__(self) -> SnippetStream:
        return self

    def __next__(self) -> SnippetBatch:
        with self._budget.running():
            batch = next(self._batches)
        self.snippets_yielded += len(batch)
        return batch

    def close(self) -> None:
        """Stop decoding and release the file (also done by exhausting the stream or ``with``)."""
        self._batches.close()

    def __enter__(self) -> SnippetStream:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def report(self) -> DecodeReport:
        """Counts and findings so far (final once the stream is exhausted)."""
        health = self._source.health if self._source is not None else None
        return DecodeReport(
            backend=self.backend,
            fallback_reason=self.fallback_reason,
            fallback_from=self.fallback_from,
            claimed_frames=self.info.frame_count,
            decoded_frames=self.decoded_frames,
            snippets=self.snippets_yielded,
            bad_packets=health.bad_packets if health else 0,
            stopped_early=health.stopped_early if health else None,
            decode_s=self._budget.elapsed_s,
        )

    def _generate(self) -> Generator[SnippetBatch, None, None]:
        pending: list[Snippet] = []
        for snippet in self._snippets():
            pending.append(snippet)
            if len(pending) == self.batch_size:
                yield SnippetBatch.stack(pending)
                pending = []
        if pending:
            yield SnippetBatch.stack(pending)
        self._finish()

    def _snippets(self) -> Iterator[Snippet]:
        for position, name in enumerate(self._backends):
            source = _SOURCES[name](self.info, self.plan, self._budget, chunk=self.batch_size, threads=self._threads)
            self._source, self.backend = source, name
            try:
                for snippet in source.snippets(first=self._next_index):
                    self._next_index = snippet.index + 1
                    yield snippet
                return
            except DecoderFailure as exc:
                failure = str(exc.named(self._budget.name))  # the file as its user knows it
                if position == len(self._backends) - 1:
                    hint = "Re-encode it (e.g. ffmpeg -i in.ext -c:v libx264 out.mp4)"
                    if len(self._backends) == 1 and name != "pyav":
                        hint = "Try backend='auto' or backend='pyav'"
                    raise VideoError(self.info.path, failure, hint, name=self._budget.name) from exc
                self.fallback_from, self.fallback_reason = name, failure
                following = self._backends[position + 1]
                logger.warning("%s; continuing with %s from snippet %d", exc, following, self._next_index)

    def _finish(self) -> None:
        assert self._source is not None  # _snippets always creates one
        self.decoded_frames = self._source.decoded_frames
        claimed = self.info.frame_count
        if claimed is not None and self.decoded_frames is not None and claimed != self.decoded_frames:
            logger.warning(
                "%s: the container claims %d frames but %d were decoded (%s)",
                Path(self.info.path).name,
                claimed,
                self.decoded_frames,
                self.backend,
            )


DEFAULT_MAX_BATCH_BYTES = 256 * 2**20


def iter_snippets(
    path: str | Path,
    *,
    snippet_frames: int = 16,
    frame_pick: FramePick = "middle",
    backend: Backend = "auto",
    batch_size: int = 32,
    keep_tail: bool = True,
    max_batch_bytes: int | None = DEFAULT_MAX_BATCH_BYTES,
    timeout_s: float | None = None,
    stop: threading.Event | None = None,
    threads: int = 0,
    info: VideoInfo | None = None,
    name: str | None = None,
) -> SnippetStream:
    """Stream a video as batches of snippet frames, decoding only as far as the consumer reads.

    Snippet ``j`` covers frames ``[T*j, T*j + T)``, ``T = snippet_frames``; see
    :mod:`workers.video.plan` for the frame pick and the tail rule, and :func:`~workers.video.plan.snap_time`
    for timestamps. Frames come out upright (rotation metadata applied) as RGB uint8.

    Args:
        path: The video file. It is probed at once, so a bad file raises here, not on iteration.
        snippet_frames: Frames per snippet (16 in the DSANet protocol).
        frame_pick: ``'middle'`` (offset ``T // 2``), ``'first'``, an offset in ``[0, T)``, or ``'all'``.
        backend: ``'auto'`` (the installed backends, fastest first: :data:`AUTO_ORDER`), ``'pyav'``,
            ``'torchcodec'`` or ``'decord'``.
        batch_size: Most snippets per batch.
        keep_tail: Keep a final snippet with fewer than ``T`` frames.
        max_batch_bytes: Cap on the frame bytes of one batch (lowers ``batch_size`` for large frames,
            never below one snippet); ``None`` for no cap.
        timeout_s: Seconds of decoding (probe included, consumer time excluded) before
            :class:`~workers.exceptions.DecodeTimeout`; ``None`` for no limit.
        stop: Set it from another thread to end decoding with :class:`~workers.exceptions.DecodeCancelled`.
        threads: Decoder threads; 0 lets the library choose.
        info: A :func:`~workers.video.probe.probe` result for this file, to skip probing again.
        name: What error messages call the file: the name its user knows (an upload is stored as ``video``);
            the file's own name when ``None``.

    Returns:
        An iterator of :class:`SnippetBatch`; its :attr:`SnippetStream.report` gives the decoded frame
        count (the container's claim may be wrong) once exhausted.

    Raises:
        ValueError: An option is out of range.
        DecoderUnavailable: ``backend='torchcodec'`` or ``'decord'`` but that package cannot be imported.
        VideoError: The file is not a usable video (raised here or, for damage found later, on iteration).
        DecodeTimeout: Probing already used up ``timeout_s``.
    """
    plan = SnippetPlan.create(snippet_frames, frame_pick, keep_tail)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    backends = _resolve_backends(backend)
    budget = DecodeBudget(path, timeout_s, stop, name=name)
    if info is None:
        with budget.running():
            info = probe_within(path, budget, MAX_PIXELS)
    size = _capped_batch_size(info, plan, batch_size, max_batch_bytes)
    return SnippetStream(info, plan, backends, size, budget, threads)


_MISSING = {
    "torchcodec": "torchcodec cannot be imported: install the worker extra and FFmpeg's shared libraries "
    "(scripts/ensure-ffmpeg.sh)",
    "decord": "the decord package cannot be imported",
}


def _resolve_backends(backend: str) -> tuple[str, ...]:
    if backend == "auto":
        return available_backends()
    if backend not in _SOURCES:
        raise ValueError(f"backend must be 'auto', 'pyav', 'torchcodec' or 'decord', got {backend!r}")
    if not _installed(backend):
        raise DecoderUnavailable(backend, _MISSING[backend])
    return (backend,)


def _capped_batch_size(info: VideoInfo, plan: SnippetPlan, batch_size: int, max_batch_bytes: int | None) -> int:
    if max_batch_bytes is None:
        return batch_size
    snippet_bytes = info.width * info.height * 3 * plan.frames_per_item
    return max(1, min(batch_size, max_batch_bytes // snippet_bytes))
