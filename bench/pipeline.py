"""Benchmark of the video pipeline on the CPU: the encoder options (fp32, int8, bf16, ONNX Runtime), their event
agreement on the demo model, and `vad extract`'s path against the script VadCLIP users write.

Sections (all by default, ``--sections`` picks some):

* ``encoder``: images/s of the full ViT-B/16 image tower (RANDOM weights) per option and batch size, measured in
  turns in one run (other jobs on the machine slow every option alike), the ratio to fp32 at batch 1 and to fp32 at
  the same batch, and the cosine of each option's features to fp32's on real-looking frames of a generated video.
* ``demo``: the demo model (``workers.demo``, its cached bundle) on its held-out videos with the CLIP encoder in
  fp32, int8 and bf16: events matched to fp32's (same count, starts and ends within 0.5 s) and frame AUCs.
* ``naive``: a 30 s 720p H.264 video through the naive script (PyAV, every 16th frame, open_clip's PIL
  preprocess, batch 1, fp32) and through `vad extract`'s path (bundle → ClipImageEncoder → FeatureExtractor) in
  fp32, int8 and (on CPUs with native bf16) bf16, each in its own process, in turns: seconds, throughput ratio
  ours/naive, peak RSS.
* ``pipeline``: end to end vs decode only vs encoder only (the analyzer), and CPU bf16 vs fp32.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/pipeline.py [--sections encoder,demo,naive] [--rounds 2]

Random weights: timings are representative, feature cosines are not quite (a trained ViT has larger activation
outliers, which int8 quantisation handles worse); the demo section uses the demo model's small random CLIP.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from model.bundle import OPENAI_VIT_B_16, Bundle
from model.factory import create_model
from workers.encode.clip_encoder import ClipImageEncoder, build_vision_tower
from workers.encode.clip_weights import make_weights
from workers.encode.cpu import cpu_flags, has_native_bf16
from workers.settings import WorkerSettings
from workers.synthetic import make_video, random_events

SHOWN_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")


def random_bundle(seed: int = 0) -> Bundle:
    """Full-size UCF DSANet and ViT-B/16 image tower, random weights (marked demo)."""
    torch.manual_seed(seed)
    model = create_model("ucf")
    visual = build_vision_tower(OPENAI_VIT_B_16["config"]).state_dict()
    text = torch.nn.functional.normalize(torch.randn(model.cfg.num_classes, model.cfg.visual_width), dim=-1)
    return Bundle(config=model.cfg, state_dict={k: v.clone() for k, v in model.state_dict().items()},
                  text_features=text, clip_state_dict={"visual." + k: v for k, v in visual.items()},
                  source={"kind": "bench-random"}, demo=True)


def timed(fn):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def machine() -> str:
    flags = cpu_flags()
    load = os.getloadavg()
    return (f"CPU: {os.cpu_count()} cores, flags {' '.join(f for f in SHOWN_FLAGS if f in flags) or 'none of'} "
            f"(absent: {' '.join(f for f in SHOWN_FLAGS if f not in flags)}); torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads, quantized engine {torch.backends.quantized.engine}; "
            f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")


def hd_video(workdir: Path, seconds: float = 30.0) -> Path:
    """The 30 s 720p 30 fps H.264 video of the naive comparison (generated once per run)."""
    path = workdir / "hd.mp4"
    if not path.exists():
        make_video(path, duration_s=seconds, fps=30.0, size=(1280, 720), events=random_events(seconds, 3))
    return path


# ---------------------------------------------------------------- encoder options


def encoder_options(weights: Any, batches: list[int], onnx_dir: Path | None) -> dict[str, tuple[Callable, int]]:
    """``name → (encode [N, 3, S, S] → [N, D], batch)`` for every option and batch size."""
    options: dict[str, tuple[Callable, int]] = {}
    for precision in ("fp32", "int8", "bf16"):
        encoder = ClipImageEncoder(OPENAI_VIT_B_16, weights, precision=precision, batch_size=1)
        # bf16 without native bf16 runs at a quarter of fp32: one batch size shows it
        for batch in batches if precision != "bf16" or has_native_bf16() else [8]:
            options[f"torch {precision} b{batch}"] = (_with_batch(encoder, batch), batch)
    if onnx_dir is not None:
        options.update(onnx_options(weights, onnx_dir, max(batches)))
    return options


def _with_batch(encoder: ClipImageEncoder, batch: int) -> Callable:
    def run(images: torch.Tensor) -> torch.Tensor:
        encoder.batch_size = batch
        return encoder.encode_images(images)
    return run


def onnx_options(weights: Any, folder: Path, batch: int) -> dict[str, tuple[Callable, int]]:
    """ONNX Runtime with the fp32 graph and with ORT's dynamically quantised int8 graph (if installed).

    The int8 graph has per-channel weights in 7 bits (``reduce_range``): with 8-bit weights, AVX2's u8 x s8
    multiply-add saturates and the features fall below the cosine bar (0.991 / 0.985 here)."""
    try:
        import onnxruntime as ort
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError:
        print("  (onnxruntime not installed: its options are skipped)")
        return {}
    fp32 = ClipImageEncoder(OPENAI_VIT_B_16, weights, precision="fp32")
    path, quantized = folder / "vit.onnx", folder / "vit-int8.onnx"
    torch.backends.mha.set_fastpath_enabled(False)  # the fused attention kernel has no ONNX export
    try:
        torch.onnx.export(fp32.visual, (torch.randn(1, 3, 224, 224),), str(path), input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "n"}, "y": {0: "n"}}, dynamo=False,
                          opset_version=17)
    finally:
        torch.backends.mha.set_fastpath_enabled(True)
    quantize_dynamic(str(path), str(quantized), weight_type=QuantType.QInt8, per_channel=True, reduce_range=True)
    options = {}
    for name, file in (("onnxruntime fp32", path), ("onnxruntime int8", quantized)):
        so = ort.SessionOptions()
        so.intra_op_num_threads = torch.get_num_threads()
        session = ort.InferenceSession(str(file), so, providers=["CPUExecutionProvider"])

        def run(images: torch.Tensor, session: Any = session) -> torch.Tensor:
            out = [session.run(None, {"x": images[i : i + batch].numpy()})[0] for i in range(0, len(images), batch)]
            return torch.from_numpy(np.concatenate(out))
        options[f"{name} b{batch}"] = (run, batch)
    return options


def bench_encoder(workdir: Path, frames_n: int, timed_n: int, rounds: int, onnx: bool) -> None:
    print(f"\n== encoder: ViT-B/16 image tower (random weights), {timed_n} images per timing, {rounds} rounds in turns")
    torch.manual_seed(0)
    weights = make_weights(build_vision_tower(OPENAI_VIT_B_16["config"]).state_dict(), "bundle", None)
    onnx_dir = workdir / "onnx" if onnx else None
    if onnx_dir is not None:
        onnx_dir.mkdir(exist_ok=True)
    options = encoder_options(weights, [1, 8, 32], onnx_dir)
    video = hd_video(workdir)
    from workers.video import iter_snippets

    frames = torch.from_numpy(np.concatenate([b.frames for b in iter_snippets(video, batch_size=16)])[:frames_n])
    images = ClipImageEncoder(OPENAI_VIT_B_16, weights).preprocess(frames)[0]
    with torch.inference_mode():
        features = {name: run(images) for name, (run, _) in options.items()}
    reference = features["torch fp32 b1"]
    seconds = dict.fromkeys(options, 0.0)
    sample = images[:timed_n]
    with torch.inference_mode():
        for _ in range(rounds):
            for name, (run, _) in options.items():
                seconds[name] += timed(lambda run=run: run(sample))[1]
    fp32_at = {batch: seconds[f"torch fp32 b{batch}"] for batch in (1, 8, 32)}
    print(f"  {'option':<22}{'images/s':>9}{'vs fp32 b1':>11}{'vs fp32 same b':>15}{'cos mean':>10}{'cos min':>9}")
    for name, (_, batch) in options.items():
        cos = torch.nn.functional.cosine_similarity(reference, features[name])
        rate = rounds * len(sample) / seconds[name]
        same = fp32_at.get(batch, fp32_at[32]) / seconds[name]
        print(f"  {name:<22}{rate:9.2f}{fp32_at[1] / seconds[name]:10.2f}x{same:14.2f}x"
              f"{cos.mean().item():10.5f}{cos.min().item():9.5f}")
    print(f"  (cosine over {len(frames)} frames of a generated 720p video; load average now "
          f"{os.getloadavg()[0]:.1f})")


# ---------------------------------------------------------------- demo events, fp32 vs int8


def bench_demo(workdir: Path) -> None:
    from workers.analyzer import Analyzer
    from workers.demo.build import demo_settings, generate
    from workers.demo.cache import default_cache_dir, ensure_demo_bundle
    from workers.demo.check import check_video, frame_auc
    from workers.demo.recipe import DemoRecipe, plan_videos

    print("\n== demo: the demo model's held-out videos, CLIP encoder in fp32 vs int8 and bf16 (the demo's small random "
          "CLIP)")
    recipe = DemoRecipe()
    demo, built_s = timed(lambda: ensure_demo_bundle(recipe, default_cache_dir()))
    videos = list(generate(recipe, plan_videos(recipe, "heldout"), workdir / "heldout").values())
    print(f"  bundle {demo.path} ({'built' if demo.built else 'cached'}, {built_s:.0f} s); {len(videos)} videos")
    results = {}
    for precision in ("fp32", "int8", "bf16"):
        analyzer = Analyzer(demo.path, demo_settings().model_copy(update={"clip_precision": precision}))
        results[precision], seconds = timed(lambda analyzer=analyzer: [analyzer.analyze(v.path) for v in videos])
        aucs = frame_auc(results[precision], videos)
        found = sum(check_video(r, v).matched for r, v in zip(results[precision], videos, strict=True))
        print(f"  {precision}: frame AUC {aucs:.4f}, events found within 1 s of the truth in {found}/{len(videos)}, "
              f"{seconds:.1f} s")
    for precision in ("int8", "bf16"):
        agree, worst = 0, 0.0
        for a, b in zip(results["fp32"], results[precision], strict=True):
            same = len(a.events) == len(b.events)
            shifts = [max(abs(x.start_s - y.start_s), abs(x.end_s - y.end_s)) for x, y in zip(a.events, b.events,
                                                                                             strict=False)]
            worst = max([worst, *shifts])
            agree += same and all(s <= 0.5 for s in shifts)
            scores = np.abs(np.subtract(a.timeline.score, b.timeline.score))
            print(f"    {a.video.filename}: events fp32 {len(a.events)} {precision} {len(b.events)}, largest boundary "
                  f"shift {max(shifts, default=0.0):.2f} s, snippet scores differ by <= {scores.max():.4f}")
        delta = frame_auc(results[precision], videos) - frame_auc(results["fp32"], videos)
        print(f"  {precision} vs fp32: same events within 0.5 s in {agree}/{len(videos)} videos (largest shift "
              f"{worst:.2f} s); frame AUC difference {delta:+.4f}")


# ---------------------------------------------------------------- the naive script vs vad extract's path


def child_naive(video: str) -> dict[str, Any]:
    """The script VadCLIP users write: PyAV, every 16th frame, open_clip's PIL preprocess, batch 1, fp32."""
    import av
    import open_clip

    model, _, preprocess = open_clip.create_model_and_transforms("ViT-B-16", pretrained=None)
    model.eval()
    started, cpu = time.perf_counter(), time.process_time()
    features = []
    with torch.no_grad(), av.open(video) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i % 16 == 0:
                features.append(model.encode_image(preprocess(frame.to_image()).unsqueeze(0)))
    return {"snippets": len(features), "extract_s": time.perf_counter() - started, "cpu_s": time.process_time() - cpu}


def child_ours(video: str, bundle: str, precision: str) -> dict[str, Any]:
    """What `vad extract --crops 1` runs: the bundle's image tower, the FeatureExtractor, the bundle's test view."""
    from model.bundle import load_bundle
    from workers.encode.features import FeatureExtractor
    from workers.encode.preprocess import view_index

    settings = WorkerSettings(device="cpu", clip_precision=precision)
    loaded = load_bundle(bundle)
    encoder = ClipImageEncoder.create(settings, loaded)
    view = view_index(settings.view_for(loaded.config.training.test_crop))
    del loaded
    started, cpu = time.perf_counter(), time.process_time()
    feats = FeatureExtractor(encoder, settings).extract(video, (view,))
    return {"snippets": feats.features.shape[1], "extract_s": time.perf_counter() - started,
            "cpu_s": time.process_time() - cpu,
            "encode_s": feats.encode_s, "wait_s": feats.wait_s, "batch": encoder.batch_size}


def peak_rss() -> int:
    """This process's peak resident memory in bytes (``VmHWM``; ``ru_maxrss`` would include the peak of the
    parent it was forked from, kept across ``exec``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_child(args: list[str]) -> dict[str, Any]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"child {args} failed: {done.stderr[-1500:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    out["wall_s"] = time.perf_counter() - started
    return out


def bench_naive(workdir: Path, rounds: int) -> None:
    from model.bundle import save_bundle

    video = hd_video(workdir)
    bundle = workdir / "bundle.safetensors"
    if not bundle.exists():
        save_bundle(random_bundle(), bundle)
    print(f"\n== naive script vs `vad extract`'s path: 30 s 720p H.264 (900 frames), each in its own process, "
          f"{rounds} rounds in turns; bundle {bundle.stat().st_size / 2**20:.0f} MiB (DSANet + ViT-B/16)")
    # bf16 where the CPU has it natively (auto's choice there); emulated it runs at a quarter of fp32
    precisions = ["fp32", "int8", *(["bf16"] if has_native_bf16() else [])]
    runs: dict[str, list[dict[str, Any]]] = {"naive": [], **{f"ours {p}": [] for p in precisions}}
    for _ in range(rounds):
        runs["naive"].append(run_child(["naive", str(video)]))
        for precision in precisions:
            runs[f"ours {precision}"].append(run_child(["ours", str(video), str(bundle), precision]))
    width = 7 * rounds + 2  # "12.34, " per round

    def joined(values: list[float], digits: int) -> str:
        return ", ".join(f"{v:.{digits}f}" for v in values)

    print(f"  {'':<11}{'extract s':>{width}}{'ours/naive':>{width}}{'CPU s':>{width}}{'ours/naive':>{width}}"
          f"{'process s':>11}{'peak RSS':>10}")

    for name, got in runs.items():
        wall, cpu = [r["extract_s"] for r in got], [r["cpu_s"] for r in got]
        ratios = [n["extract_s"] / w for n, w in zip(runs["naive"], wall, strict=True)]
        cpu_ratios = [n["cpu_s"] / c for n, c in zip(runs["naive"], cpu, strict=True)]
        print(f"  {name:<11}{joined(wall, 1):>{width}}{joined(ratios, 2):>{width}}{joined(cpu, 1):>{width}}"
              f"{joined(cpu_ratios, 2):>{width}}"
              f"{min(r['wall_s'] for r in got):11.1f}{max(r['maxrss'] for r in got) / 2**20:8.0f} MiB")
    extra = runs["ours fp32"][0]
    print(f"  (ours/naive: throughput ratio per round, from the wall and the CPU seconds of the extraction; ours batch"
          f" {extra['batch']}; peak RSS = the process's "
          f"VmHWM; naive builds open_clip's full CLIP, ours maps the bundle; load average now "
          f"{os.getloadavg()[0]:.1f})")


# ---------------------------------------------------------------- end to end (analyzer)


def bench_pipeline(workdir: Path, seconds: float, size: str, compare_frames: int) -> None:
    from workers.analyzer import Analyzer
    from workers.video import iter_snippets

    width, height = (int(v) for v in size.split("x"))
    video = make_video(workdir / "bench.mp4", duration_s=seconds, fps=25.0, size=(width, height),
                       events=random_events(seconds, 3))
    print(f"\n== pipeline: {video.frame_count} frames {width}x{height} @ 25 fps ({seconds:g} s)")
    bundle = random_bundle()
    analyzer = Analyzer(bundle, WorkerSettings(device="cpu", clip_precision="fp32"))
    encoder, view = analyzer.encoder, analyzer.view()
    encoder.encode_snippets(torch.zeros(2, height, width, 3, dtype=torch.uint8), (view,))  # warm-up
    batches, decode_s = timed(lambda: [b.frames for b in iter_snippets(video.path, batch_size=encoder.batch_size)])
    _, encode_s = timed(lambda: [encoder.encode_snippets(f, (view,)) for f in batches])
    result, e2e_s = timed(lambda: analyzer.analyze(video.path))
    n, t = len(result.timeline.score), result.timings
    print(f"  {n} snippets: decode only {decode_s:.2f} s, encoder only {encode_s:.2f} s ({n / encode_s:.1f}/s), "
          f"end to end {e2e_s:.2f} s (decode {t.decode_s:.2f}, encode {t.encode_s:.2f}, waited {t.wait_s:.2f}, "
          f"DSANet {t.model_s:.3f}); e2e / max(decode, encode) = {e2e_s / max(decode_s, encode_s):.2f}")
    frames = torch.from_numpy(np.concatenate(batches))[:compare_frames]
    weights = make_weights({k.removeprefix("visual."): v for k, v in bundle.clip_state_dict.items()}, "bundle", None)
    bf16 = ClipImageEncoder(bundle.clip, weights, precision="bf16")
    fp32_feats, fp32_s = timed(lambda: encoder.encode_snippets(frames, (view,))[0])
    bf16_feats, bf16_s = timed(lambda: bf16.encode_snippets(frames, (view,))[0])
    cos = torch.nn.functional.cosine_similarity(fp32_feats, bf16_feats)
    print(f"  CPU bf16 vs fp32 ({len(frames)} frames): cosine min {cos.min():.5f}; bf16/fp32 time = "
          f"{bf16_s / fp32_s:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sections", default="encoder,demo,naive", help="encoder, demo, naive, pipeline")
    parser.add_argument("--rounds", type=int, default=2, help="timing rounds (in turns) of the encoder and naive")
    parser.add_argument("--frames", type=int, default=64, help="frames of the encoder's cosine comparison")
    parser.add_argument("--timed-images", type=int, default=16, help="images per encoder timing")
    parser.add_argument("--no-onnx", action="store_true", help="skip the ONNX Runtime options")
    parser.add_argument("--seconds", type=float, default=20.0, help="pipeline section: video length")
    parser.add_argument("--size", default="320x240", help="pipeline section: video size")
    parser.add_argument("--workdir", type=Path, default=None, help="keep generated files here (reused)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        out = child_naive(*rest) if kind == "naive" else child_ours(*rest)
        out["maxrss"] = peak_rss()
        print(json.dumps(out))
        return
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="vad-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(machine())
    sections = args.sections.split(",")
    if "encoder" in sections:
        bench_encoder(workdir, args.frames, args.timed_images, args.rounds, not args.no_onnx)
    if "demo" in sections:
        bench_demo(workdir)
    if "naive" in sections:
        bench_naive(workdir, args.rounds)
    if "pipeline" in sections:
        bench_pipeline(workdir, args.seconds, args.size, 8)
    print(f"\n{machine()}")


if __name__ == "__main__":
    main()
