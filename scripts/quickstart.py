"""End-to-end run of what dsanet-vad can do today, on any machine, offline.

The authors' checkpoints cannot be downloaded here, so this writes a checkpoint in exactly their
format (every key and shape of model_ucf.pth) with RANDOM weights, then runs the real commands
on it: ``vad import-checkpoint``, ``vad bundle-info`` and ``vad score-features``. The scores it
prints are meaningless (random weights); the point is that every step a user with the real
``model_ucf.pth`` takes runs here. With the real file, pass ``--checkpoint model_ucf.pth``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch


def run(*args: str) -> None:
    print(f"\n$ vad {shlex.join(args)}", flush=True)
    subprocess.run([sys.executable, "-m", "vad", *args], check=True)


def write_random_official_checkpoint(path: Path, preset: str) -> None:
    """A checkpoint with the authors' layout and random weights (seeded), like torch.save(model.state_dict())."""
    import open_clip

    from model.bundle import OPENAI_VIT_B_16
    from model.factory import bundle_from_model, create_model, load_clip_text_weights
    from model.official import export_official_state_dict

    torch.manual_seed(0)
    cfg = OPENAI_VIT_B_16["config"]
    clip = open_clip.model.CLIP(embed_dim=cfg["embed_dim"], vision_cfg=cfg["vision_cfg"],
                                text_cfg=cfg["text_cfg"], quick_gelu=True)
    clip_sd = clip.state_dict()
    model = create_model(preset, with_text_tower=True)
    load_clip_text_weights(model, clip_sd)
    torch.save(export_official_state_dict(bundle_from_model(model, clip_sd)), path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, help="an official model_ucf.pth / model_xd.pth (default: random)")
    parser.add_argument("--preset", choices=["ucf", "xd"], default="ucf")
    parser.add_argument("--features", type=Path, help="a VadCLIP-format .npy [n, 512] (default: random)")
    parser.add_argument("--out", type=Path, default=Path("out/quickstart"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    checkpoint = args.checkpoint
    if checkpoint is None:
        checkpoint = args.out / f"random_model_{args.preset}.pth"
        print(f"==> writing {checkpoint}: the authors' checkpoint layout with RANDOM weights (~750 MB)")
        write_random_official_checkpoint(checkpoint, args.preset)
    features = args.features
    if features is None:
        features = args.out / "features.npy"
        print(f"==> writing {features}: 600 random snippet features (about 5 min of video at 30 fps)")
        np.save(features, np.random.default_rng(0).normal(0, 0.5, size=(600, 512)).astype(np.float32))

    bundle = args.out / f"{args.preset}.safetensors"
    scores = args.out / "scores.json"
    run("import-checkpoint", str(checkpoint), "--preset", args.preset, "-o", str(bundle))
    if args.checkpoint is None:
        checkpoint.unlink()  # the bundle holds everything; no need to keep 750 MB of random weights twice
    run("bundle-info", str(bundle))
    run("score-features", str(features), "--bundle", str(bundle), "-o", str(scores))

    result = json.loads(scores.read_text())
    anomaly = np.array(result["anomaly"])
    probs = np.array(result["class_probs"])
    print(f"\n==> {scores}: {result['snippets']} snippets, classes {', '.join(result['class_names'])}")
    print("    first snippets: anomaly " + " ".join(f"{a:.3f}" for a in anomaly[:8]))
    print(f"    class rows sum to 1: {np.allclose(probs.sum(axis=1), 1, atol=1e-5)}")
    if args.checkpoint is None:
        print("    (random weights: these numbers only show that the pipeline runs; "
              "use --checkpoint model_ucf.pth for real scores)")


if __name__ == "__main__":
    main()
