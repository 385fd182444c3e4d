"""The GPU check: one prepared run on a lent GPU machine that writes its findings as a markdown table.

Measures, with the real architectures (CLIP ViT-B/16 image tower, full-size DSANet) and RANDOM weights:

1. DSANet on the device in fp32 against the CPU, same bundle and features (max |difference| <= 1e-5);
2. CLIP image features in bf16 and fp16 against fp32 on the device (cosine >= 0.999);
3. CLIP images/s at several batch sizes in fp32/bf16/fp16, plain, channels-last and ``torch.compile``;
4. end to end (decode → CLIP → DSANet, the worker's Analyzer) video seconds analysed per wall second for 720p and
   1080p H.264, with 1, 4, 8 and 16 worker processes sharing the device;
5. CPU decode frames/s per core (PyAV, one thread), and GPU decode frames/s where a CUDA decoder works;
6. live streams: N paced 1080p 25 fps streams decoded with NVDEC (CPU fallback, noted) and scored by one
   scheduler batching CLIP and DSANet across streams: the most streams sustained (<= 1 % dropped, lag p95 <= 1 s)
   (``bench/gpu_streams.py``).

    python bench/gpu.py --device cuda --out results/        # on the GPU machine (scripts/gpu-check.sh run)
    python bench/gpu.py --device cpu --quick --out /tmp/x   # the dry run: every section, tiny sizes

Each section is timed against a budget (``--budget-s``) and records an error instead of stopping the run, so one
broken part still leaves the others' figures. Results: ``OUT/gpu-check.md`` and ``OUT/gpu-check.json``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from bench.pipeline import random_bundle
from model.bundle import OPENAI_VIT_B_16, Bundle, save_bundle
from model.inference import DSANetPredictor
from workers.encode.attention import project_attention
from workers.encode.clip_encoder import ClipImageEncoder, build_vision_tower
from workers.encode.clip_weights import make_weights

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class Report:
    """Sections of rows, written as markdown and JSON after every section (a killed run keeps what it had)."""

    def __init__(self, out: Path, started: float, budget_s: float) -> None:
        self.out, self.started, self.budget_s = out, started, budget_s
        self.sections: list[dict[str, Any]] = []

    def left(self) -> float:
        """Seconds of the budget left (unbounded when the budget is 0, as in the dry run)."""
        if not self.budget_s:
            return float("inf")
        return self.budget_s - (time.perf_counter() - self.started)

    def section(self, title: str, header: list[str], fn: Callable[[], list[list[Any]]], note: str = "") -> None:
        t0 = time.perf_counter()
        try:
            rows, error = fn(), None
        except Exception as exc:  # a broken section must not cost the others' figures
            rows, error = [], f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
        self.sections.append({"title": title, "header": header, "rows": rows, "note": note, "error": error,
                              "seconds": round(time.perf_counter() - t0, 1)})
        print(f"[{time.perf_counter() - self.started:6.1f} s] {title}: {len(rows)} rows" + (f", {error}" if error
                                                                                                 else ""), flush=True)
        self.write()

    def write(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "gpu-check.json").write_text(json.dumps(self.sections, indent=1, default=str))
        lines = []
        for s in self.sections:
            lines += [f"### {s['title']}", ""]
            if s["note"]:
                lines += [s["note"], ""]
            if s["rows"]:
                lines += ["| " + " | ".join(s["header"]) + " |", "|" + "---|" * len(s["header"])]
                lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in s["rows"]]
            if s["error"]:
                lines += ["", f"error: `{s['error']}`"]
            lines += ["", f"({s['seconds']} s)", ""]
        (self.out / "gpu-check.md").write_text("\n".join(lines))


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "0" if value == 0 else f"{value:.5g}" if abs(value) < 10 else f"{value:,.1f}"
    return str(value)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def environment(device: torch.device) -> list[list[Any]]:
    rows: list[list[Any]] = [["python", platform.python_version()], ["torch", torch.__version__],
                             ["CPU cores", os.cpu_count()], ["device", str(device)]]
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        rows += [["GPU", props.name], ["GPU memory GiB", round(props.total_memory / 2**30, 1)],
                 ["CUDA", torch.version.cuda], ["bf16 supported", torch.cuda.is_bf16_supported()]]
    return rows


def dsanet_parity(bundle: Bundle, device: torch.device, quick: bool) -> list[list[Any]]:
    """Same bundle and features on the CPU and on ``device`` (fp32); lengths around the 256-snippet window."""
    cpu = DSANetPredictor(bundle, device="cpu")
    dev = DSANetPredictor(bundle, device=str(device))
    rng = np.random.default_rng(0)
    rows = []
    for n in (1, 255, 257) if quick else (1, 255, 256, 257, 1000, 4000):
        feats = rng.normal(size=(n, bundle.config.visual_width)).astype(np.float32)
        a, b = cpu.score(feats), dev.score(feats)
        diff_a = float(np.abs(a.anomaly - b.anomaly).max())
        diff_c = float(np.abs(a.class_probs - b.class_probs).max())
        rows.append([n, diff_a, diff_c, "yes" if max(diff_a, diff_c) <= 1e-5 else "NO"])
    return rows


def video_frames(path: Path, count: int) -> torch.Tensor:
    """``count`` decoded RGB frames ``[N, H, W, 3]`` uint8 of a video, evenly spread."""
    import av

    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    picks = np.linspace(0, len(frames) - 1, count).round().astype(int)
    return torch.from_numpy(np.stack([frames[i] for i in picks]))


def clip_cosine(bundle: Bundle, device: torch.device, frames: torch.Tensor) -> list[list[Any]]:
    """The encoder as the workers run it (preprocessing + autocast), bf16/fp16 against fp32 on ``device``."""
    weights = make_weights({k.removeprefix("visual."): v for k, v in bundle.clip_state_dict.items()}, "bundle", None)
    feats = {}
    for precision in PRECISIONS:
        encoder = ClipImageEncoder(bundle.clip, weights, device=device, precision=precision, batch_size=64)
        feats[precision] = encoder.encode_snippets(frames, (0,))[0].float().cpu()
    rows = []
    for precision in ("bf16", "fp16"):
        cos = torch.nn.functional.cosine_similarity(feats["fp32"], feats[precision])
        rows.append([precision, len(frames), float(cos.min()), float(cos.mean()),
                     "yes" if float(cos.min()) >= 0.999 else "NO"])
    return rows


def clip_throughput(device: torch.device, quick: bool, report: Report) -> list[list[Any]]:
    """Images/s of the ViT-B/16 tower on ``[B, 3, 224, 224]`` inputs (autocast as in production)."""
    batches = (2, 4) if quick else (32, 128, 512)
    variants = [("plain", False, False), ("channels-last", True, False)]
    if device.type == "cuda":
        variants.append(("torch.compile", False, True))
    rows = []
    for name, channels_last, compiled in variants:
        tower = build_vision_tower(OPENAI_VIT_B_16["config"]).to(device).eval().requires_grad_(False)
        project_attention(tower)  # the attention the workers' encoder runs
        if channels_last:
            tower = tower.to(memory_format=torch.channels_last)
        run = torch.compile(tower) if compiled else tower
        for precision, dtype in PRECISIONS.items():
            if quick and precision != "fp32" and device.type == "cpu":
                continue  # CPU bf16/fp16 without AMX is many times slower: the dry run only checks the path
            for batch in batches:
                if report.left() < 60:
                    rows.append([name, precision, batch, "skipped (budget)"])
                    continue
                x = torch.randn(batch, 3, 224, 224, device=device)
                if channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                iters = 2 if quick else max(4, 4096 // batch)
                with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                    for _ in range(2 if not compiled else 3):
                        run(x)
                    sync(device)
                    t0 = time.perf_counter()
                    for _ in range(iters):
                        run(x)
                    sync(device)
                seconds = time.perf_counter() - t0
                rows.append([name, precision, batch, batch * iters / seconds])
        del tower, run
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def cpu_decode(videos: dict[str, Path]) -> list[list[Any]]:
    """PyAV decoding on one thread: frames/s per core (and decord's, where installed)."""
    import av

    rows = []
    for label, path in videos.items():
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type, stream.thread_count = "SLICE", 1
            t0, n = time.perf_counter(), 0
            for frame in container.decode(stream):
                frame.to_ndarray(format="rgb24")
                n += 1
        rows.append([label, "pyav (1 thread)", n / (time.perf_counter() - t0)])
        try:
            import decord

            reader = decord.VideoReader(str(path), num_threads=1)
            t0 = time.perf_counter()
            for i in range(len(reader)):
                reader[i].asnumpy()
            rows.append([label, "decord (1 thread)", len(reader) / (time.perf_counter() - t0)])
        except ImportError:
            pass
    return rows


def gpu_decode(videos: dict[str, Path], device: torch.device) -> list[list[Any]]:
    """NVDEC through torchcodec, where its CUDA build is installed; otherwise a row saying why not."""
    if device.type != "cuda":
        return [["-", "none", "not a CUDA device"]]
    try:
        from torchcodec.decoders import VideoDecoder
    except ImportError as exc:
        return [["-", "torchcodec (cuda)", f"not available: {exc}"]]
    rows = []
    for label, path in videos.items():
        decoder = VideoDecoder(str(path), device=str(device))
        t0 = time.perf_counter()
        n = len(decoder)
        for start in range(0, n, 64):
            decoder.get_frames_in_range(start, min(n, start + 64))
        sync(device)
        rows.append([label, "torchcodec (cuda)", n / (time.perf_counter() - t0)])
    return rows


def _e2e_child(bundle_path: str, video: str, duration_s: float, device: str, repeats: int, barrier: Any,
               results: Any) -> None:
    """One worker process: load once, wait for the others, analyse ``video`` ``repeats`` times."""
    from workers.analyzer import Analyzer
    from workers.settings import WorkerSettings

    torch.set_num_threads(1)  # the processes share the cores: one intra-op thread each, as several workers would
    analyzer = Analyzer(bundle_path, WorkerSettings(device=device, decode_threads=1))
    analyzer.analyze(video)  # warm-up (cudnn/cublas handles, allocator)
    barrier.wait()
    t0 = time.time()
    for _ in range(repeats):
        analyzer.analyze(video)
    results.put((t0, time.time(), repeats * duration_s))


def end_to_end(bundle_path: Path, videos: dict[str, tuple[Path, float]], device: torch.device, quick: bool,
               report: Report) -> list[list[Any]]:
    """Video seconds analysed per wall second with N worker processes sharing the device."""
    ctx = mp.get_context("spawn")  # as the supervisor: fresh interpreters, CUDA initialised in each child only
    rows = []
    for label, (path, duration) in videos.items():
        for n in (1, 2) if quick else (1, 4, 8, 16):
            if report.left() < 45:
                rows.append([label, n, "skipped (budget)", "", ""])
                continue
            barrier, results = ctx.Barrier(n), ctx.Queue()
            repeats = 1 if quick else 2
            procs = [ctx.Process(target=_e2e_child, args=(str(bundle_path), str(path), duration, str(device), repeats,
                                                          barrier, results)) for _ in range(n)]
            for p in procs:
                p.start()
            got = _collect(procs, results, deadline=time.monotonic() + max(60.0, report.left()))
            start, end = min(g[0] for g in got), max(g[1] for g in got)
            analysed = sum(g[2] for g in got)
            rows.append([label, n, analysed / (end - start), analysed, end - start])
    return rows


def _collect(procs: list[Any], results: Any, deadline: float) -> list[tuple[float, float, float]]:
    """Every child's result; a child that died or a deadline passed ends the section with the reason."""
    import queue

    got: list[tuple[float, float, float]] = []
    try:
        while len(got) < len(procs):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(procs) - len(got)} of {len(procs)} worker processes did not finish in time")
            try:
                got.append(results.get(timeout=1.0))
            except queue.Empty:
                dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
                if dead:
                    raise RuntimeError(f"worker processes exited with {dead} (see the output above)") from None
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
    return got


def make_videos(workdir: Path, quick: bool) -> dict[str, tuple[Path, float]]:
    from workers.synthetic import make_video

    sizes = {"320x240": (320, 240)} if quick else {"720p": (1280, 720), "1080p": (1920, 1080)}
    seconds = 4.0 if quick else 20.0
    out = {}
    for label, size in sizes.items():
        video = make_video(workdir / f"{label}.mp4", duration_s=seconds, fps=25.0, size=size, codec="libx264")
        out[label] = (video.path, video.duration_s)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N, or cpu for the dry run")
    parser.add_argument("--out", type=Path, required=True, help="folder for gpu-check.md and gpu-check.json")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks every section runs (CPU dry run)")
    parser.add_argument("--budget-s", type=float, default=380.0,
                        help="seconds of measuring after set-up; a heavy measurement starts only while enough is left "
                             "(ignored by --quick, which runs everything)")
    args = parser.parse_args()
    started = time.perf_counter()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("CUDA is not available here: run the dry run with --device cpu --quick")
    report = Report(args.out, started, 0.0 if args.quick else args.budget_s)
    mode = "dry run (CPU, tiny sizes)" if args.quick else "full"
    report.section("Environment", ["what", "value"], lambda: [*environment(device), ["mode", mode]])
    workdir = Path(tempfile.mkdtemp(prefix="vad-gpu-check-"))
    videos = make_videos(workdir, args.quick)
    bundle = random_bundle()
    bundle_path = workdir / "bench.safetensors"
    save_bundle(bundle, bundle_path)
    report.section("DSANet on the device vs CPU (fp32, same bundle and features)",
                   ["snippets", "max abs diff anomaly", "max abs diff class probs", "within 1e-5"],
                   lambda: dsanet_parity(bundle, device, args.quick))
    first = next(iter(videos.values()))[0]
    report.section("CLIP image features vs fp32 (workers' encoder, frames of a generated video)",
                   ["precision", "frames", "cosine min", "cosine mean", ">= 0.999"],
                   lambda: clip_cosine(bundle, device, video_frames(first, 2 if args.quick else 64)))
    report.section("CLIP ViT-B/16 images/s", ["variant", "precision", "batch", "images/s"],
                   lambda: clip_throughput(device, args.quick, report),
                   note="random weights; autocast as in production; torch.compile only on CUDA")
    report.section("Decode frames/s per CPU core", ["video", "decoder", "frames/s"],
                   lambda: cpu_decode({k: v[0] for k, v in videos.items()}))
    report.section("GPU decode frames/s", ["video", "decoder", "frames/s"],
                   lambda: gpu_decode({k: v[0] for k, v in videos.items()}, device))
    report.section("End to end: video seconds analysed per wall second (x real time)",
                   ["video", "worker processes", "x real time", "video s", "wall s"],
                   lambda: end_to_end(bundle_path, videos, device, args.quick, report),
                   note="each process: the workers' Analyzer (PyAV decode, CLIP, DSANet), one torch thread, "
                        "models loaded and warmed before the clock starts")
    streams_note: dict[str, str] = {}

    def streams() -> list[list[Any]]:
        from bench.gpu_streams import streams_section

        rows, streams_note["note"] = streams_section(bundle, device, args.quick, workdir, report.left)
        return rows

    report.section("Live streams per GPU (NVDEC, batched across streams)",
                   ["streams", "sustained", "snippets", "scored", "dropped %", "lag p50 s", "lag p95 s", "mean batch"],
                   streams)
    report.sections[-1]["note"] = streams_note.get("note", "")
    report.write()
    print(f"wrote {args.out / 'gpu-check.md'} in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
