"""Benchmark of live streams: how many real-time streams one worker process sustains, with each lever on and off.

For each model, frame size and *lever set*, N streams are published at real-time pace (``ffmpeg -re``, a generated
25 fps video with injected events and a stated share of static scene, looped, MPEG-TS over UDP, no re-encoding)
and read by N :class:`workers.stream.StreamRunner` threads of this one process sharing one
:class:`workers.stream.StreamEngine`, N growing until the process no longer keeps up (each lever set starts from
the previous one's count). After a warm-up, each load is measured for ``--seconds``:

* scored snippets/s, drop rate (snippets replaced before they were scored, over all read);
* lag p50/p95: frame arrival to its score;
* publish-to-event latency p50/p95: an injected onset written by FFmpeg (its progress reports) to the event's
  opening, for models that detect the generator's events (the demo model; random weights detect nothing);
* encoder calls saved by skipping unchanged scenes, the largest batch, CPU seconds per second.

A load is *sustained* when the drop rate is at most ``--max-drop`` (1 %) and the lag p95 at most ``--max-lag``
(1 s). Models: ``vitb16`` (the full ViT-B/16 image tower and full-size UCF DSANet, random weights: the real cost)
and ``demo`` (the synthetic demo model, built once and cached). Lever sets (``--levers``), each adding one lever
to the one before: ``base`` (each stream encodes and scores alone, every frame decoded by FFmpeg's own threads,
every kept frame encoded, fp32), ``batch`` (batching across streams), ``precision`` (the CLIP precision the
start-up probe picks on this CPU), ``decode`` (one decoder thread per stream, non-reference frames not decoded),
``skip`` (unchanged scenes reuse the last feature): the last is the worker's defaults.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/streams.py                 # the table of docs/streams.md
    HF_HUB_OFFLINE=1 .venv/bin/python bench/streams.py --quick         # a dry run: a few seconds per load
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from tests.support.publish import Publisher, missing_tools, reencode_for_streaming
from tests.support.static_scenes import still_intervals
from tests.support.stream_sink import RecordingSink
from vad.cli.stack import free_port
from workers.settings import WorkerSettings
from workers.stream import StreamEngine, StreamRunner
from workers.synthetic import Event, make_video

FPS = 25.0
VIDEO_S = 20.0
EVENTS = (Event("flash", 5.0, 8.0), Event("color_shift", 13.0, 16.0))
LEVERS = ("base", "batch", "precision", "decode", "skip")
"""Lever sets, each adding one lever to the one before (see the module docstring)."""


@dataclass(frozen=True)
class LeverSet:
    """The settings of one lever set."""

    name: str
    batching: bool
    precision: bool
    decode: bool
    skip: bool

    @classmethod
    def upto(cls, name: str) -> LeverSet:
        on = LEVERS[: LEVERS.index(name) + 1]
        return cls(name, "batch" in on, "precision" in on, "decode" in on, "skip" in on)

    def settings(self, device: str, precision: str) -> WorkerSettings:
        defaults = WorkerSettings.model_fields
        return WorkerSettings(
            device=device, clip_precision=precision if self.precision else "fp32", stream_precision_probe=False,
            stream_queue_depth=1, stream_batch_size=0 if self.batching else 1,
            stream_skip_frames=defaults["stream_skip_frames"].default if self.decode else "none",
            stream_decode_threads=defaults["stream_decode_threads"].default if self.decode else 0,
            stream_skip_unchanged=defaults["stream_skip_unchanged"].default if self.skip else 0.0, evidence=False)


@dataclass
class Load:
    """What one load (N streams) gave."""

    model: str
    size: str
    levers: str
    streams: int
    scored_per_s: float
    drop_rate: float
    lag_p50: float
    lag_p95: float
    events_found: int
    events_injected: int
    latency_p50: float | None
    latency_p95: float | None
    cpu_per_wall: float
    saved: float
    largest_batch: int

    @property
    def cpu_per_stream(self) -> float:
        """CPU seconds per second of one 25 fps stream: the CPU per scored snippet times 25 / 16 snippets a second
        (what the shared machine distorts least: other processes slow this one down, they do not make it work
        more)."""
        return self.cpu_per_wall / max(self.scored_per_s, 1e-9) * FPS / 16

    def capacity(self, cores: float) -> float:
        """Streams ``cores`` CPU cores could carry at this cost (an upper bound: no lag or GIL counted)."""
        return cores / max(self.cpu_per_stream, 1e-9)

    @property
    def detects(self) -> bool:
        """Whether the model was trained on the generator's events (the demo model)."""
        return self.model == "demo"

    def sustained(self, max_drop: float, max_lag: float) -> bool:
        return self.drop_rate <= max_drop and self.lag_p95 <= max_lag

    def row(self, max_drop: float, max_lag: float, cores: float = 2.0) -> str:
        lat = (f"{self.latency_p50:.2f} / {self.latency_p95:.2f}" if self.latency_p50 is not None else "-")
        found = f"{self.events_found}/{self.events_injected}"
        if not self.detects:  # random weights: an "event" is chance, its latency means nothing
            lat = found = "-"
        ok = "yes" if self.sustained(max_drop, max_lag) else "no"
        return (f"| {self.model} | {self.size} | {self.levers} | {self.streams} | {ok} | {self.scored_per_s:.2f} | "
                f"{100 * self.drop_rate:.1f} % | {self.lag_p50:.2f} / {self.lag_p95:.2f} | {lat} | "
                f"{found} | {100 * self.saved:.0f} % | {self.largest_batch} | {self.cpu_per_wall:.2f} | "
                f"{self.cpu_per_stream:.3f} | {self.capacity(cores):.1f} |")


HEADER = ("| model | size | levers | streams | sustained | scored snippets/s | dropped | lag p50 / p95 s | "
          "publish→event p50 / p95 s | events found | encoder calls saved | largest batch | CPU s per s | "
          "CPU s per stream-s | streams 2 cores carry |\n"
          "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")


class Engines:
    """One loaded model shared by every lever set (each gets its own engine, so its own scheduler)."""

    def __init__(self, model: str, device: str) -> None:
        self.model = model
        self.base = engine_for(model, WorkerSettings(device=device, clip_precision="fp32"))
        self._encoders = {"fp32": self.base.encoder}
        self.probed = self.probe() if model == "vitb16" else "fp32"

    def probe(self) -> str:
        """The precision the workers' start-up probe picks for this model on this CPU (cached between runs)."""
        from workers.encode.precision_probe import stream_encoder

        settings = WorkerSettings(device=str(self.base.encoder.device), clip_precision="auto")
        encoder, choice = stream_encoder(self.base.encoder, settings)
        self._encoders[encoder.precision] = encoder
        print(f"{self.model}: the precision probe picks {choice.summary()}", flush=True)
        return encoder.precision

    def engine(self, levers: LeverSet, device: str) -> StreamEngine:
        settings = levers.settings(device, self.probed)
        encoder = self._encoders.get(settings.clip_precision) or self.base.encoder.with_precision(
            settings.clip_precision)
        self._encoders[settings.clip_precision] = encoder
        return StreamEngine(settings=settings, encoder=encoder, predictor=self.base.predictor)


def engine_for(model: str, settings: WorkerSettings) -> StreamEngine:
    if model == "demo":
        from workers.demo.cache import default_cache_dir, ensure_demo_bundle
        from workers.demo.recipe import DemoRecipe

        cache = Path(os.environ.get("VAD_DEMO_CACHE") or default_cache_dir())
        return StreamEngine(ensure_demo_bundle(DemoRecipe(), cache).path, settings)
    if model == "vitb16":
        from bench.pipeline import random_bundle

        return StreamEngine(random_bundle(), settings)
    raise SystemExit(f"unknown model {model!r}: use demo or vitb16")


def prepare_video(folder: Path, size: tuple[int, int], static_share: float) -> Path:
    """A 20 s, 25 fps video with two injected events, static ``static_share`` of its time, encoded as a camera
    sends it."""
    raw = make_video(folder / f"raw-{size[0]}x{size[1]}.mp4", duration_s=VIDEO_S, fps=FPS, size=size, seed=1,
                     events=EVENTS, crf=28, still=still_intervals(VIDEO_S, static_share))
    return reencode_for_streaming(raw.path, folder / f"live-{size[0]}x{size[1]}.mp4", gop=int(FPS))


@contextmanager
def streams(count: int, video: Path, engine: StreamEngine, log: Path
            ) -> Iterator[list[tuple[Publisher, RecordingSink, StreamRunner]]]:
    """``count`` publishers and runners, started; all stopped on exit."""
    stop = threading.Event()
    out: list[tuple[Publisher, RecordingSink, StreamRunner]] = []
    threads = []
    with ExitStack() as stack:
        for _ in range(count):
            port = free_port(socket.SOCK_DGRAM)
            sink = RecordingSink(keep_scores=20_000)
            runner = StreamRunner(f"udp://127.0.0.1:{port}", engine, sink)
            thread = threading.Thread(target=runner.run, args=(stop,), daemon=True)
            thread.start()
            threads.append(thread)
            publisher = stack.enter_context(Publisher(video, f"udp://127.0.0.1:{port}", copy=True, loop=-1, log=log))
            out.append((publisher, sink, runner))
        try:
            yield out
        finally:
            stop.set()
            for thread in threads:
                thread.join(30)


def measure(model: str, size: str, levers: str, count: int, video: Path, engine: StreamEngine, warmup_s: float,
            seconds: float, log: Path) -> Load:
    with streams(count, video, engine, log) as running:
        time.sleep(warmup_s)
        t0 = time.monotonic()
        cpu0 = time.process_time()
        base = [(sink.scored, runner.source.dropped, runner.gate.encoded, runner.gate.reused)
                for _, sink, runner in running]
        largest0 = engine.scheduler.stats.largest if engine.batching else 1
        engine.scheduler.stats.largest = 0 if engine.batching else 1
        time.sleep(seconds)
        t1 = time.monotonic()
        cpu = time.process_time() - cpu0
        ends = [(sink.scored, runner.source.dropped, runner.gate.encoded, runner.gate.reused)
                for _, sink, runner in running]
        largest = engine.scheduler.stats.largest if engine.batching else largest0
        time.sleep(3.0)  # let events of onsets published near the end open
    scored, dropped, encoded, reused = (sum(e[k] - b[k] for b, e in zip(base, ends, strict=True)) for k in range(4))
    lags = [r.item.lag_s for _, sink, _ in running for r in sink.scores
            if t0 <= r.at <= t1 and r.item.lag_s is not None]
    latencies, injected = event_latencies(running, t0, t1)

    def pct(values: list[float], q: float) -> float | None:
        return float(np.percentile(values, q)) if values else None

    lag50, lag95 = pct(lags, 50), pct(lags, 95)
    return Load(model, size, levers, count, scored / (t1 - t0), dropped / max(1, scored + dropped),
                float("inf") if lag50 is None else lag50, float("inf") if lag95 is None else lag95, len(latencies),
                injected, pct(latencies, 50), pct(latencies, 95), cpu / (t1 - t0),
                reused / max(1, encoded + reused), largest)


def event_latencies(running: list[tuple[Publisher, RecordingSink, StreamRunner]], t0: float, t1: float
                    ) -> tuple[list[float], int]:
    """Publish-to-open latency of each injected onset published in ``[t0, t1]`` whose event opened within 5 s."""
    latencies, injected = [], 0
    for publisher, sink, _ in running:
        opens = [r.at for r in sink.events if r.item.kind == "open"]
        for loop in range(10_000):
            onsets = [publisher.published_at(loop * VIDEO_S + e.start_s) for e in EVENTS]
            if any(t is None for t in onsets):
                break
            for published in onsets:
                assert published is not None
                if not t0 <= published <= t1:
                    continue
                injected += 1
                found = [at - published for at in opens if -0.5 <= at - published <= 5.0]
                if found:
                    latencies.append(min(found))
    return latencies, injected


def run_loads(args: argparse.Namespace, model: str, size: str, levers: str, counts: list[int], video: Path,
              engine: StreamEngine, log: Path, rows: list[Load]) -> None:
    """Measure each load of ``counts`` (in order), stopping after the first that is far from sustained (a drop
    rate above 50 %: larger loads would only drop more)."""
    for count in counts:
        load = measure(model, size, levers, count, video, engine, args.warmup, args.seconds, log)
        rows.append(load)
        print(load.row(args.max_drop, args.max_lag, args.cores), flush=True)
        if load.drop_rate > 0.5:
            break


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--models", default="vitb16,demo")
    parser.add_argument("--sizes", default="640x360,1280x720", help="frame sizes of the vitb16 rows")
    parser.add_argument("--demo-sizes", default="640x360", help="frame sizes of the demo rows")
    parser.add_argument("--levers", default=",".join(LEVERS), help=f"lever sets, in order, of {', '.join(LEVERS)}")
    parser.add_argument("--static-share", type=float, default=0.75, help="share of the video's time the scene stands "
                                                                         "still")
    parser.add_argument("--seconds", type=float, default=15.0, help="measured seconds per load")
    parser.add_argument("--warmup", type=float, default=6.0, help="seconds before measuring a load")
    parser.add_argument("--counts", default="1,4,8", help="numbers of vitb16 streams measured")
    parser.add_argument("--demo-counts", default="32,64", help="numbers of demo streams measured")
    parser.add_argument("--cores", type=float, default=2.0, help="cores the capacity estimate assumes")
    parser.add_argument("--max-drop", type=float, default=0.01)
    parser.add_argument("--max-lag", type=float, default=1.0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="a dry run: the demo model only, 1-2 streams, a few "
                                                              "seconds per load")
    args = parser.parse_args(argv)
    if args.quick:
        args.models, args.demo_sizes, args.seconds, args.warmup, args.demo_counts = "demo", "320x180", 3.0, 3.0, "2"
    if missing_tools("ffmpeg"):
        print("ffmpeg is not installed: run `bash scripts/ensure-stream-tools.sh`", file=sys.stderr)
        return 2
    lever_names = args.levers.split(",")
    rows: list[Load] = []
    print(f"CPU cores visible: {os.cpu_count()}; torch threads: {torch_threads()}; load average at start: "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}; static share of the scenes: {args.static_share:.0%}",
          flush=True)
    with tempfile.TemporaryDirectory(prefix="vad-bench-streams-") as tmp:
        folder = Path(tmp)
        for model in args.models.split(","):
            engines = Engines(model, args.device)
            print(HEADER, flush=True)
            for size in (args.sizes if model == "vitb16" else args.demo_sizes).split(","):
                video = prepare_video(folder, parse_size(size), args.static_share)
                counts = [int(c) for c in (args.counts if model == "vitb16" else args.demo_counts).split(",")]
                for name in lever_names:
                    engine = engines.engine(LeverSet.upto(name), args.device)
                    run_loads(args, model, size, name, counts, video, engine, folder / "publishers.log", rows)
    summary(args, rows)
    return 0


def summary(args: argparse.Namespace, rows: list[Load]) -> None:
    print(f"\nper lever set: most streams sustained in this run (drop <= {args.max_drop:.0%}, lag p95 <= "
          f"{args.max_lag:g} s), and the streams {args.cores:g} cores carry at its cost at the largest load measured "
          "that dropped at most half its snippets "
          f"(load average at end {' '.join(f'{x:.1f}' for x in os.getloadavg())}):")
    for model, size in dict.fromkeys((r.model, r.size) for r in rows):
        parts = []
        for name in dict.fromkeys(r.levers for r in rows if (r.model, r.size) == (model, size)):
            mine = [r for r in rows if (r.model, r.size, r.levers) == (model, size, name)]
            ok = [r.streams for r in mine if r.sustained(args.max_drop, args.max_lag)]
            costed = [r for r in mine if r.drop_rate <= 0.5] or mine  # a collapsed load scores too few to cost
            parts.append(f"{name} {max(ok) if ok else 0} ({costed[-1].capacity(args.cores):.1f})")
        print(f"  {model} {size}: " + ", ".join(parts))


def parse_size(text: str) -> tuple[int, int]:
    width, _, height = text.partition("x")
    return int(width), int(height)


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the publishers on the way out
    raise SystemExit(main())
