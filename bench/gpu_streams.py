"""The streams section of the GPU check (``bench/gpu.py``): how many live 25 fps 1080p cameras one GPU sustains.

N streams are read at once, each paced like a camera (frame ``g`` of a stream becomes available at
``start + (g + 1) / fps``, the clip looping), each decoded by its own decoder in its own thread: NVDEC through
torchcodec's CUDA decoder where it works, else PyAV with FFmpeg's CUDA hardware decoding, else PyAV on the CPU (the
table's note says which, and why the others did not work). A stream keeps one frame per 16-frame snippet (the
frame at offset 8, as the workers do) and hands it to one scheduler, which takes what all streams have ready (at most
``--batch`` frames, waiting at most 50 ms for more), runs one CLIP forward for them and one DSANet forward for all
their windows (each stream's last 252 snippets and the 4-snippet hold, as live scoring does), and stamps each
snippet's lag: from its frame's due time to its score. A stream whose previous snippet is still unscored when the
next one comes has the older one dropped (newest wins, as the live queue does).

A level of N is *sustained* when at most 1 % of the snippets are dropped and the lag's 95th percentile is at
most 1 s. The streams are files paced in the reader, not a network server: RTSP's demuxing cost is not counted
(it is small next to decoding), and every stream decodes the same generated clip (the decoders do not share work).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

SNIPPET, OFFSET = 16, 8
FPS = 25.0
BATCH_WAIT_S = 0.05

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
    window: deque[np.ndarray]
    pending: tuple[Any, float] | None = None  # the kept frame waiting for the scheduler and its due time
    produced: int = 0
    dropped: int = 0


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


def run_level(engine: Any, kept: KeptFrames, clip: Path, clip_frames: int, n: int, seconds: float,
              batch: int) -> LevelResult:
    """``n`` streams of ``clip`` for ``seconds``, scored by one scheduler (see the module docstring)."""
    hold = 4
    width = engine.visual_length - hold
    streams = [_Stream(deque(maxlen=width)) for _ in range(n)]
    lock, ready = threading.Lock(), threading.Condition(threading.Lock())
    errors: list[str] = []
    start = time.monotonic() + 1.0 + 0.02 * n  # time for every reader to open its decoder before its first frame
    end = start + seconds

    def read(i: int) -> None:
        try:
            for loop in itertools.count():
                for index, frame in kept(clip):
                    due = start + (loop * clip_frames + index + 1) / FPS
                    if due > end:
                        return
                    wait = due - time.monotonic()
                    if wait > 0:
                        time.sleep(wait)
                    with lock:
                        s = streams[i]
                        s.produced += 1
                        if s.pending is not None:
                            s.dropped += 1
                        s.pending = (frame, due)
                    with ready:
                        ready.notify()
        except Exception as exc:  # a decoder that breaks: reported in the row
            errors.append(f"stream {i}: {type(exc).__name__}: {str(exc)[:160]}")

    threads = [threading.Thread(target=read, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    lags: list[float] = []
    batches = batched = 0
    while time.monotonic() < end + 2.0 and (any(t.is_alive() for t in threads) or any(s.pending for s in streams)):
        with ready:
            ready.wait(BATCH_WAIT_S)
        with lock:
            waiting = [(i, s.pending) for i, s in enumerate(streams) if s.pending is not None]
            taken = sorted(waiting, key=lambda item: item[1][1])[:batch]  # the oldest first: no stream starves
            for i, _ in taken:
                streams[i].pending = None
        if not taken:
            continue
        frames = torch.stack([torch.as_tensor(p[0]) for _, p in taken])
        features = engine.encode(frames)
        windows = []
        for (i, _), feature in zip(taken, features, strict=True):
            streams[i].window.append(feature)
            windows.append(np.stack([*streams[i].window, *[feature] * hold]))
        engine.score_windows(windows)
        now = time.monotonic()
        lags += [now - p[1] for _, p in taken]
        batches, batched = batches + 1, batched + len(taken)
    for t in threads:
        t.join(timeout=1.0)
    produced = sum(s.produced for s in streams)
    dropped = sum(s.dropped for s in streams) + sum(1 for s in streams if s.pending is not None)
    p50, p95 = (float(np.percentile(lags, q)) for q in (50, 95)) if lags else (float("nan"), float("nan"))
    return LevelResult(n, produced, len(lags), dropped, p50, p95, batches, batched / max(1, batches), seconds, errors)


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
    engine = StreamEngine(bundle, WorkerSettings(device=str(device), batch_size=batch))
    engine.encode(np.zeros((2, size[1], size[0], 3), np.uint8))  # warm the encoder (allocator, kernels)
    rows: list[list[Any]] = []
    best = 0
    for n in levels:
        if not quick and left() < seconds + 40:
            rows.append([n, "skipped (budget)", "", "", "", "", "", ""])
            continue
        result = run_level(engine, kept, clip.path, clip.frame_count, n, seconds, batch)
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
