"""Seconds per training iteration of the full-size presets at their real batch (UCF 64 + 64, XD 96).

One iteration is what the trainer does (spec D): forward with SGNM and the CLIP text tower (text features are
recomputed every step), the seven loss terms, backward, AdamW step, StableAdamW step, SGNM schedule step.
Random features and RANDOM weights: the timings are representative, the losses are not. Evaluation and data
loading are not included.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/train_step.py --iters 3 [--preset ucf] [--device cuda] [--amp bf16]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from model.config import DSANetConfig, load_preset
from model.inference import autocast_context
from model.train.clip_source import build_training_model, random_clip
from model.train.losses import LossSettings, dsanet_loss
from model.train.optim import build_optimisation

OFFICIAL_ITERATIONS = {"ucf": 125, "xd": 412}


def random_batch(cfg: DSANetConfig, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One batch of the preset's layout: features ``[B, 256, 512]``, label vectors, lengths in 32..256."""
    gen = torch.Generator().manual_seed(seed)
    t = cfg.training
    size = 2 * t.batch_size if t.batch_layout == "paired" else t.batch_size
    features = 0.45 * torch.randn(size, cfg.visual_length, cfg.visual_width, generator=gen)
    lengths = torch.randint(32, cfg.visual_length + 1, (size,), generator=gen)
    labels = torch.zeros(size, cfg.num_classes)
    classes = torch.randint(0, cfg.num_classes, (size,), generator=gen)
    if t.batch_layout == "paired":
        classes[: t.batch_size] = 0
        classes[t.batch_size:] = torch.randint(1, cfg.num_classes, (t.batch_size,), generator=gen)
    labels[torch.arange(size), classes] = 1.0
    return features, labels, lengths


def synchronised(device: torch.device, fn: Callable[[], Any]) -> tuple[Any, float]:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return out, time.perf_counter() - start


def bench(preset: str, iters: int, warmup: int, device: torch.device, amp: str) -> dict[str, float]:
    cfg = load_preset(preset)
    model = build_training_model(cfg, random_clip(cfg, 0), seed=0).to(device).train()
    optimisation = build_optimisation(model, cfg.training, OFFICIAL_ITERATIONS[preset])
    settings = LossSettings.from_training(cfg.training)
    features, labels, lengths = (t.to(device) for t in random_batch(cfg, 0))
    totals = {"forward": 0.0, "backward": 0.0, "optimiser": 0.0}
    for step in range(warmup + iters):
        def forward() -> Any:
            with autocast_context(device, "fp32" if amp == "off" else amp):
                out = model(features, lengths, with_sgnm=True)
            return dsanet_loss(out, lengths, labels, settings)

        terms, t_forward = synchronised(device, forward)
        optimisation.zero_grad()
        _, t_backward = synchronised(device, terms.total.backward)
        _, t_optimiser = synchronised(device, optimisation.step)
        if step >= warmup:
            for key, value in zip(totals, (t_forward, t_backward, t_optimiser), strict=True):
                totals[key] += value / iters
    totals["iteration"] = sum(totals.values())
    totals["sequences"] = float(features.shape[0])
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=("ucf", "xd", "both"), default="both")
    parser.add_argument("--iters", type=int, default=3, help="timed iterations")
    parser.add_argument("--warmup", type=int, default=1, help="untimed iterations first")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", choices=("off", "bf16", "fp16"), default="off", help="CUDA autocast (forward)")
    args = parser.parse_args()
    device = torch.device(args.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, {where}, amp {args.amp}, {args.iters} timed iteration(s) after {args.warmup}")
    for preset in ("ucf", "xd") if args.preset == "both" else (args.preset,):
        r = bench(preset, args.iters, args.warmup, device, args.amp)
        epoch = OFFICIAL_ITERATIONS[preset] * r["iteration"]
        print(f"{preset}: batch {r['sequences']:.0f} x 256 x 512: {r['iteration']:.2f} s/iteration (forward+loss "
              f"{r['forward']:.2f} s, backward {r['backward']:.2f} s, optimisers {r['optimiser']:.2f} s), "
              f"{r['sequences'] / r['iteration']:.1f} sequences/s; {OFFICIAL_ITERATIONS[preset]} iterations/epoch "
              f"= {epoch / 60:.1f} min/epoch, {10 * epoch / 3600:.2f} h for 10 epochs (no evaluation)", flush=True)


if __name__ == "__main__":
    main()
