"""Benchmark of the video pipeline: end to end vs decode only vs encoder only, and CPU bf16 vs fp32 CLIP features.

Runs the real architectures (CLIP ViT-B/16 image tower, full-size DSANet) with RANDOM weights on a
generated video: timings are representative, scores are not. Everything is measured in one run, so
the ratios compare like with like on the machine at hand.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/pipeline.py --seconds 20 --size 320x240 [--device cuda]
    HF_HUB_OFFLINE=1 .venv/bin/python bench/pipeline.py --decoders [VIDEO] --seconds 20 --size 1280x720
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from model.bundle import OPENAI_VIT_B_16, Bundle
from model.factory import create_model
from workers.analyzer import Analyzer
from workers.encode.clip_encoder import ClipImageEncoder, build_vision_tower
from workers.encode.clip_weights import make_weights
from workers.settings import WorkerSettings
from workers.testing import make_video, random_events
from workers.video import available_backends, iter_snippets


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


def compare_decoders(path: Path, batch_size: int = 32, repeats: int = 3,
                     threads: int = 0) -> dict[str, tuple[float, float, float]]:
    """Decode ``path`` with every installed backend (the production ``'middle'`` pick) and print frames/s, wall
    and CPU time (all threads) and their ratios to PyAV's, the best of ``repeats`` runs taken in turns.
    ``threads`` decoder threads (0: the library's choice, as the worker's default).

    Returns:
        Backend name → (frames/s, wall s, CPU s).
    """
    backends = ["pyav", *(name for name in available_backends() if name != "pyav")]

    def run(backend: str) -> tuple[int, float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        stream = iter_snippets(path, backend=backend, batch_size=batch_size, threads=threads)  # type: ignore[arg-type]
        for _ in stream:
            pass
        return stream.report.decoded_frames or 0, time.perf_counter() - wall, time.process_time() - cpu

    for backend in backends:
        run(backend)  # warm-up: imports, page cache
    runs: dict[str, list[tuple[int, float, float]]] = {name: [] for name in backends}
    for _ in range(repeats):  # in turns, so that a burst of load elsewhere hits every backend alike
        for backend in backends:
            runs[backend].append(run(backend))
    best = {name: (r[0][0], min(w for _, w, _ in r), min(c for _, _, c in r)) for name, r in runs.items()}
    print(f"\ndecoders on {path.name} ({best['pyav'][0]} frames; 'middle' pick, batch {batch_size}, threads {threads}, "
          f"best of {repeats} runs in turns)")
    print(f"  {'backend':<11} {'frames/s':>9} {'wall s':>8} {'CPU s':>8} {'fps / PyAV':>11} {'CPU / PyAV':>11}")
    _, ref_wall, ref_cpu = best["pyav"]
    out = {}
    for name, (frames, wall, cpu) in best.items():
        out[name] = (frames / wall, wall, cpu)
        print(f"  {name:<11} {frames / wall:9.1f} {wall:8.2f} {cpu:8.2f} {ref_wall / wall:11.2f} {cpu / ref_cpu:11.2f}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--size", default="320x240")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--compare-frames", type=int, default=8,
                        help="frames for the bf16 vs fp32 comparison (CPU bf16 can be 10x slower without AMX)")
    parser.add_argument("--decoders", nargs="?", const="", metavar="VIDEO",
                        help="only compare the decoding backends, on VIDEO or on a generated --seconds/--size video")
    parser.add_argument("--repeats", type=int, default=3, help="runs per decoder for --decoders (the best is kept)")
    parser.add_argument("--decode-threads", type=int, default=0, help="decoder threads for --decoders (0: auto)")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    if args.decoders is not None:
        path = Path(args.decoders) if args.decoders else make_video(
            Path(tempfile.mkdtemp(prefix="vad-bench-")) / "decoders.mp4", duration_s=args.seconds, fps=args.fps,
            size=(width, height)).path
        compare_decoders(path, args.batch_size, args.repeats, args.decode_threads)
        return
    workdir = Path(tempfile.mkdtemp(prefix="vad-bench-"))
    video, gen_s = timed(lambda: make_video(workdir / "bench.mp4", duration_s=args.seconds, fps=args.fps,
                                            size=(width, height), events=random_events(args.seconds, 3)))
    print(f"video: {video.frame_count} frames {width}x{height} @ {args.fps:g} fps ({args.seconds:g} s), "
          f"generated in {gen_s:.1f} s; torch threads {torch.get_num_threads()}, device {args.device}")
    bundle = random_bundle()
    settings = WorkerSettings(device=args.device, batch_size=args.batch_size, clip_precision="fp32")
    analyzer, load_s = timed(lambda: Analyzer(bundle, settings))
    encoder = analyzer.encoder
    view = analyzer.view()
    encoder.encode_snippets(torch.zeros(2, height, width, 3, dtype=torch.uint8), (view,))  # warm-up
    print(f"models loaded in {load_s:.1f} s (random ViT-B/16 + DSANet ucf; RANDOM WEIGHTS: timings only)")

    batches, decode_s = timed(lambda: [b.frames for b in iter_snippets(video.path, batch_size=args.batch_size)])
    _, encode_s = timed(lambda: [encoder.encode_snippets(f, (view,)) for f in batches])
    result, e2e_s = timed(lambda: analyzer.analyze(video.path))
    n = len(result.timeline.score)
    t = result.timings
    print(f"\n{n} snippets")
    print(f"  decode only    {decode_s:7.2f} s")
    print(f"  encoder only   {encode_s:7.2f} s   ({n / encode_s:.1f} snippets/s)")
    print(f"  end to end     {e2e_s:7.2f} s   (in-run: decode {t.decode_s:.2f}, encode {t.encode_s:.2f}, "
          f"waited {t.wait_s:.2f}, DSANet {t.model_s:.3f}; {args.seconds / e2e_s:.1f}x real time)")
    print(f"  ratios: e2e / (decode + encode) = {e2e_s / (decode_s + encode_s):.2f}, "
          f"e2e / max(decode, encode) = {e2e_s / max(decode_s, encode_s):.2f}, "
          f"e2e / encode = {e2e_s / encode_s:.2f}, decode / encode = {decode_s / encode_s:.2f}")

    frames = torch.from_numpy(np.concatenate(batches))[: args.compare_frames]
    weights = make_weights({k.removeprefix("visual."): v for k, v in bundle.clip_state_dict.items()}, "bundle", None)
    bf16 = ClipImageEncoder(bundle.clip, weights, device=args.device, precision="bf16", batch_size=args.batch_size)
    bf16.encode_snippets(frames[:2], (view,))  # warm-up
    fp32_feats, fp32_s = timed(lambda: encoder.encode_snippets(frames, (view,))[0])
    bf16_feats, bf16_s = timed(lambda: bf16.encode_snippets(frames, (view,))[0])
    cos = torch.nn.functional.cosine_similarity(fp32_feats, bf16_feats)
    print(f"\nCLIP bf16 vs fp32 on {args.device} ({len(frames)} frames, random ViT-B/16): cosine min {cos.min():.5f}, "
          f"mean {cos.mean():.5f}; time fp32 {fp32_s:.2f} s, bf16 {bf16_s:.2f} s (bf16/fp32 = {bf16_s / fp32_s:.2f})")


if __name__ == "__main__":
    main()
