"""The streams section of the GPU check (``bench/gpu.py``): how many live 25 fps 1080p cameras one GPU sustains.

N streams are read at once, each paced like a camera (frame ``g`` of a stream becomes available at
``start + (g + 1) / fps``, the clip looping), each decoded by its own decoder in its own thread: NVDEC through
torchcodec's CUDA decoder where it works, else PyAV with FFmpeg's CUDA hardware decoding, else PyAV on the CPU (the
table's note says which, and why the others did not work). A stream keeps one frame per 16-frame snippet (the
frame at offset 8, as the workers do) and hands it to the stream's runner thread; the runners submit their
snippets to the workers' scheduler (:class:`~workers.stream.batch_scheduler.BatchScheduler`), which runs one CLIP
forward for the kept frames of all waiting streams (at most 256, waiting at most 50 ms for more) and one DSANet
forward for all their windows (each stream's last 252 snippets and the 4-snippet hold, as live scoring does). Each
snippet's lag runs from its frame's due time to its score. A stream whose runner still waits for a score when the
next kept frame comes has the older one dropped (newest wins, as the live queue does).

A level of N is *sustained* when at most 1 % of the snippets are dropped and the lag's 95th percentile is at
most 1 s. The streams are files paced in the reader, not a network server: RTSP's demuxing cost is not counted
(it is small next to decoding), and every stream decodes the same generated clip (the decoders do not share work).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

SNIPPET, OFFSET = 16, 8
FPS = 25.0

KeptFrames = Callable[[Path], Iterator[tuple[int, Any]]]
"""Opens a decoder on a file and yields ``(frame index, kept frame [H, W, 3] uint8)`` for frames 8, 24, 40…"""


def _torchcodec_cuda(device: torch.device) -> KeptFrames:
    from torchcodec.decoders import VideoDecoder

    def kept(path: Path) -> Iterator[tuple[int, Any]]:
        decoder = VideoDecoder(str(path), device=str(device), dimension_order="NHWC")
        for index in range(OFFSET, len(decoder), SNIPPET):  # forward reads: NVDEC decodes every frame on the way
            yield index, decoder.get_frame_at(index).data

    return kept


def _pyav(hwaccel: bool) -> KeptFrames:
    import av

    def kept(path: Path) -> Iterator[tuple[int, Any]]:
        options: dict[str, Any] = {}
        if hwaccel:
            from av.codec.hwaccel import HWAccel

            options["hwaccel"] = HWAccel(device_type="cuda", allow_software_fallback=False)
        with av.open(str(path), **options) as container:
            stream = container.streams.video[0]
            if not hwaccel:
                stream.thread_type, stream.thread_count = "SLICE", 1
            for index, frame in enumerate(container.decode(stream)):
                if index % SNIPPET == OFFSET:
                    yield index, torch.from_numpy(frame.to_ndarray(format="rgb24"))

    return kept


def pick_decoder(sample: Path, device: torch.device) -> tuple[str, KeptFrames, str]:
    """The first decoder that reads ``sample``: NVDEC (torchcodec, then PyAV's CUDA hwaccel) on a GPU, else
    PyAV on the CPU; with a note of what did not work."""
    tried: list[str] = []
    candidates: list[tuple[str, Callable[[], KeptFrames]]] = []
    if device.type == "cuda":
        candidates += [("torchcodec NVDEC", lambda: _torchcodec_cuda(device)),
                       ("PyAV hwaccel=cuda (NVDEC)", lambda: _pyav(True))]
    else:
        tried.append("NVDEC: not a CUDA device")
    candidates.append(("PyAV on the CPU (1 thread per stream)", lambda: _pyav(False)))
    for name, make in candidates:
        try:
            kept = make()
            first = next(iter(kept(sample)))
            if first[0] != OFFSET:
                raise RuntimeError(f"the first kept frame was {first[0]}, not {OFFSET}")
            return name, kept, "; ".join(tried)
        except Exception as exc:  # the next decoder may work; the note says why this one did not
            tried.append(f"{name}: {type(exc).__name__}: {str(exc)[:160]}")
    raise RuntimeError("no decoder could read the clip: " + "; ".join(tried))


@dataclass
class _Stream:
    pending: tuple[Any, float] | None = None  # the kept frame waiting for the stream's runner, and its due time
    produced: int = 0
    dropped: int = 0
    lags: list[float] = field(default_factory=list)
    wake: threading.Condition = field(default_factory=threading.Condition)


@dataclass
class LevelResult:
    streams: int
    snippets: int
    scored: int
    dropped: int
    lag_p50: float
    lag_p95: float
    batches: int
    mean_batch: float
    seconds: float
    errors: list[str] = field(default_factory=list)

    @property
    def sustained(self) -> bool:
        drop_rate = self.dropped / max(1, self.snippets)
        return not self.errors and drop_rate <= 0.01 and self.lag_p95 <= 1.0 and self.scored > 0


def run_level(engine: Any, kept: KeptFrames, clip: Path, clip_frames: int, n: int, seconds: float) -> LevelResult:
    """``n`` streams of ``clip`` for ``seconds``, scored through the engine's scheduler (see the module docstring)."""
    from workers.stream.batch_scheduler import SnippetRequest
    from workers.stream.online import OnlineScorer

    hold = 4
    streams = [_Stream() for _ in range(n)]
    errors: list[str] = []
    start = time.monotonic() + 1.0 + 0.02 * n  # time for every reader to open its decoder before its first frame
    end = start + seconds
    scheduler = engine.scheduler
    before = (scheduler.stats.batches, scheduler.stats.snippets)

    def read(s: _Stream, i: int) -> None:  # the camera and its decoder: never waits for the model
        try:
            for loop in itertools.count():
                for index, frame in kept(clip):
                    due = start + (loop * clip_frames + index + 1) / FPS
                    if due > end:
                        return
                    wait = due - time.monotonic()
                    if wait > 0:
                        time.sleep(wait)
                    with s.wake:
                        s.produced += 1
                        s.dropped += s.pending is not None  # newest wins, as the live queue
                        s.pending = (frame, due)
                        s.wake.notify()
        except Exception as exc:  # a decoder that breaks: reported in the row
            errors.append(f"stream {i}: {type(exc).__name__}: {str(exc)[:160]}")
        finally:
            with s.wake:
                s.wake.notify()

    def score(s: _Stream, reader: threading.Thread) -> None:  # the stream's runner: one snippet at a time
        scorer = OnlineScorer(engine, engine.visual_length - hold, hold)
        scheduler.attach()
        try:
            number = 0
            while True:
                with s.wake:
                    while s.pending is None and reader.is_alive():
                        s.wake.wait(0.5)
                    if s.pending is None:
                        return
                    (frame, due), s.pending = s.pending, None
                scheduler.score(SnippetRequest(scorer, frame, None, number, 0.0, 0.0))
                s.lags.append(time.monotonic() - due)
                number += 1
        finally:
            scheduler.detach()

    threads = []
    for i, s in enumerate(streams):
        reader = threading.Thread(target=read, args=(s, i), daemon=True)
        threads += [reader, threading.Thread(target=score, args=(s, reader), daemon=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=max(0.1, end + 30.0 - time.monotonic()))
    lags = [lag for s in streams for lag in s.lags]
    batches = scheduler.stats.batches - before[0]
    scored = scheduler.stats.snippets - before[1]
    p50, p95 = (float(np.percentile(lags, q)) for q in (50, 95)) if lags else (float("nan"), float("nan"))
    return LevelResult(n, sum(s.produced for s in streams), len(lags), sum(s.dropped for s in streams), p50, p95,
                       batches, scored / max(1, batches), seconds, errors)


def streams_section(bundle: Any, device: torch.device, quick: bool, workdir: Path, left: Callable[[], float],
                    batch: int = 256) -> tuple[list[list[Any]], str]:
    """The rows of the streams section and its note (decoder used, what did not work, the best level)."""
    from workers.settings import WorkerSettings
    from workers.stream.online import StreamEngine
    from workers.synthetic import make_video

    size, clip_s, seconds = ((320, 180), 2.0, 3.0) if quick else ((1920, 1080), 8.0, 10.0)
    levels = (2,) if quick else (25, 50, 100, 150, 200)
    clip = make_video(workdir / "stream.mp4", duration_s=clip_s, fps=FPS, size=size, codec="libx264")
    name, kept, tried = pick_decoder(clip.path, device)
    # the workers' scheduler (workers/stream/batch_scheduler.py), a GPU-sized batch; every frame encoded (moving
    # scenes: the scene-change gate would skip few, and the point is the encoder's capacity)
    engine = StreamEngine(bundle, WorkerSettings(device=str(device), stream_batch_size=batch, stream_batch_wait_ms=50,
                                                 stream_skip_unchanged=0))
    engine.encode(np.zeros((2, size[1], size[0], 3), np.uint8))  # warm the encoder (allocator, kernels)
    rows: list[list[Any]] = []
    best = 0
    for n in levels:
        if not quick and left() < seconds + 40:
            rows.append([n, "skipped (budget)", "", "", "", "", "", ""])
            continue
        result = run_level(engine, kept, clip.path, clip.frame_count, n, seconds)
        rows.append([n, "yes" if result.sustained else "no", result.snippets, result.scored,
                     f"{100 * result.dropped / max(1, result.snippets):.2f}", round(result.lag_p50, 3),
                     round(result.lag_p95, 3), round(result.mean_batch, 1)])
        if result.errors:
            rows[-1].append("; ".join(result.errors[:3]))
        if result.sustained:
            best = n
        elif not quick:
            break  # more streams would only fall further behind
    note = (f"{size[0]}x{size[1]} {FPS:g} fps H.264 streams paced from a file for {seconds:g} s each level; decoder: "
            f"{name}{' (not used: ' + tried + ')' if tried else ''}; CLIP {engine.clip_precision} and DSANet batched "
            f"across streams (at most {batch} per forward); most streams sustained: {best}")
    return rows, note
