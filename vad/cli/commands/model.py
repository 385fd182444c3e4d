"""Model commands: import the authors' checkpoints, score features, describe bundles."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from vad.cli.app import Precision, Preset, app, fail, offline_hub


@app.command("import-checkpoint")
def import_checkpoint(
    checkpoint: Annotated[Path, typer.Argument(help="The authors' model_ucf.pth / model_xd.pth (or checkpoint.pth).")],
    preset: Annotated[Preset, typer.Option("--preset", "-p", help="Dataset the checkpoint was trained on.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Bundle file to write (.safetensors).")],
) -> None:
    """Convert an official DSANet checkpoint into a self-describing bundle.

    Every key is checked: a missing or unexpected key, a shape mismatch or disagreeing CLIP copies
    stop the import with a list of what is wrong.
    """
    offline_hub()
    from model.bundle import save_bundle
    from model.exceptions import ModelError
    from model.official import import_official_checkpoint

    try:
        bundle = import_official_checkpoint(checkpoint, preset.value)
        sha = save_bundle(bundle, output)
    except ModelError as exc:
        raise fail(str(exc)) from exc
    typer.echo(f"wrote {output} (preset {preset.value}, {bundle.config.num_classes} classes, "
               f"CLIP image tower included, weights sha256 {sha[:16]}…)")


@app.command("score-features")
def score_features(
    features: Annotated[Path, typer.Argument(help="A .npy array [n, 512]: one CLIP feature per 16-frame snippet.")],
    bundle: Annotated[Path, typer.Option("--bundle", "-b", help="Model bundle (from import-checkpoint or train).")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write .npz or .json; without it, JSON goes to stdout.")
    ] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto.")] = "cpu",
    precision: Annotated[Precision, typer.Option(help="fp32 reproduces the official outputs.")] = Precision.fp32,
    verify: Annotated[bool, typer.Option(help="Check the bundle's weights sha256 before use.")] = True,
) -> None:
    """Score pre-extracted VadCLIP-format features: an anomaly probability and a class distribution per snippet."""
    offline_hub()
    import numpy as np

    from model.bundle import load_bundle
    from model.exceptions import ModelError
    from model.inference import DSANetPredictor

    try:
        array = np.load(features, allow_pickle=False)
        loaded = load_bundle(bundle, verify=verify, load_clip=False)
        scores = DSANetPredictor(loaded, device=device, precision=precision.value).score(array)
    except (ModelError, OSError, ValueError) as exc:
        raise fail(str(exc)) from exc
    meta = {"bundle_sha256": loaded.sha256, "preset": loaded.config.name, "demo": loaded.demo}
    if output is not None and output.suffix == ".npz":
        arrays: dict[str, Any] = {"anomaly": scores.anomaly, "class_probs": scores.class_probs,
                                  "class_names": np.array(loaded.class_names),
                                  **{k: np.array(v) for k, v in meta.items()}}
        np.savez(output, **arrays)
    else:
        doc = {**meta, "class_names": loaded.class_names, "snippets": int(scores.anomaly.shape[0]),
               "anomaly": scores.anomaly.tolist(), "class_probs": scores.class_probs.tolist()}
        text = json.dumps(doc)
        if output is None:
            sys.stdout.write(text + "\n")
        else:
            output.write_text(text)
    top = scores.class_probs[:, 1:].mean(axis=0).argmax() + 1
    typer.echo(f"{scores.anomaly.shape[0]} snippets; max anomaly {scores.anomaly.max():.3f}, "
               f"mean {scores.anomaly.mean():.3f}; most likely anomaly class {loaded.class_names[top]}"
               + (f"; wrote {output}" if output else ""), err=True)


@app.command("bundle-info")
def bundle_info(bundle: Annotated[Path, typer.Argument(help="Model bundle file.")]) -> None:
    """Describe a bundle: preset, classes, CLIP towers, source and checksum (reads only its header)."""
    from model.bundle import read_bundle_metadata
    from model.exceptions import ModelError

    try:
        meta = read_bundle_metadata(bundle)
    except ModelError as exc:
        raise fail(str(exc)) from exc
    cfg = meta["config"]
    lines = [
        f"bundle        {bundle}",
        f"preset        {cfg['name']} ({cfg.get('dataset') or 'custom'})"
        + ("  [SYNTHETIC DEMO MODEL]" if meta["demo"] else ""),
        f"classes       {', '.join(meta['class_names'])}",
        f"architecture  width {cfg['visual_width']}, {cfg['visual_layers']} temporal layer(s), "
        f"window {cfg['attn_window']}, text adapters {cfg['text_adapt_until']}",
        f"clip          {meta['clip'].get('model_name')} / {meta['clip'].get('pretrained')}",
        f"source        {json.dumps(meta['source'])}",
        f"format        v{meta['format_version']}, weights sha256 {meta['weights_sha256']}",
    ]
    typer.echo("\n".join(lines))
