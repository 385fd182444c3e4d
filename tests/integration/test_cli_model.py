"""The model commands through the real CLI entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from model.bundle import load_bundle, save_bundle
from model.inference import DSANetPredictor
from model.official import export_official_state_dict
from tests.conftest import official_manifest, tiny_bundle
from vad.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def bundle_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bundle") / "tiny.safetensors"
    save_bundle(tiny_bundle("ucf", seed=2), path)
    return path


def test_help_lists_the_commands() -> None:
    out = subprocess.run([sys.executable, "-m", "vad", "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("import-checkpoint", "score-features", "bundle-info"):
        assert command in out


def test_score_features_json_matches_the_library(tmp_path: Path, bundle_path: Path) -> None:
    feats = np.random.default_rng(0).normal(size=(300, 64)).astype(np.float32)
    np.save(tmp_path / "f.npy", feats)
    result = runner.invoke(app, ["score-features", str(tmp_path / "f.npy"), "--bundle", str(bundle_path),
                                 "-o", str(tmp_path / "s.json")])
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "s.json").read_text())
    expected = DSANetPredictor(load_bundle(bundle_path)).score(feats)
    assert doc["snippets"] == 300 and doc["preset"] == "ucf" and doc["demo"] is False
    assert doc["bundle_sha256"] == load_bundle(bundle_path).sha256
    assert len(doc["class_names"]) == 14 and doc["class_names"][0] == "normal"
    np.testing.assert_allclose(doc["anomaly"], expected.anomaly, atol=1e-7)
    np.testing.assert_allclose(doc["class_probs"], expected.class_probs, atol=1e-7)


def test_score_features_npz_and_stdout(tmp_path: Path, bundle_path: Path) -> None:
    np.save(tmp_path / "f.npy", np.ones((5, 64), np.float32))
    assert runner.invoke(app, ["score-features", str(tmp_path / "f.npy"), "-b", str(bundle_path),
                               "-o", str(tmp_path / "s.npz")]).exit_code == 0
    with np.load(tmp_path / "s.npz") as npz:
        assert npz["anomaly"].shape == (5,) and npz["class_probs"].shape == (5, 14)
        assert list(npz["class_names"])[:2] == ["normal", "abuse"]
    proc = subprocess.run([sys.executable, "-m", "vad", "score-features", str(tmp_path / "f.npy"), "-b",
                           str(bundle_path)], capture_output=True, text=True, check=True)
    assert len(json.loads(proc.stdout)["anomaly"]) == 5  # JSON on stdout, the summary on stderr
    assert "5 snippets" in proc.stderr


def test_score_features_errors_are_readable(tmp_path: Path, bundle_path: Path) -> None:
    np.save(tmp_path / "wide.npy", np.ones((5, 512), np.float32))
    result = runner.invoke(app, ["score-features", str(tmp_path / "wide.npy"), "-b", str(bundle_path)])
    assert result.exit_code == 2 and "expected features of shape [n, 64]" in result.output
    result = runner.invoke(app, ["score-features", str(tmp_path / "missing.npy"), "-b", str(bundle_path)])
    assert result.exit_code == 2 and "missing.npy" in result.output
    result = runner.invoke(app, ["score-features", str(tmp_path / "wide.npy"), "-b", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "bundle not found" in result.output


def test_bundle_info(bundle_path: Path) -> None:
    result = runner.invoke(app, ["bundle-info", str(bundle_path)])
    assert result.exit_code == 0
    assert "ucf (UCF-Crime)" in result.output and "roadaccidents" in result.output and "sha256" in result.output


def test_import_checkpoint_refuses_a_foreign_file(tmp_path: Path) -> None:
    torch.save({"foo.weight": torch.zeros(3)}, tmp_path / "foreign.pth")
    result = runner.invoke(app, ["import-checkpoint", str(tmp_path / "foreign.pth"), "--preset", "xd",
                                 "-o", str(tmp_path / "b.safetensors")])
    assert result.exit_code == 2
    assert "does not match the DSANet layout" in result.output and "unexpected keys: foo.weight" in result.output
    assert not (tmp_path / "b.safetensors").exists()


def random_manifest_state_dict(preset: str, seed: int) -> dict[str, torch.Tensor]:
    """A state dict shaped like the released checkpoint; the two CLIP prefixes alias one tensor as upstream."""
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}
    for key, shape in official_manifest(preset).items():
        if key.startswith("clip_adapter.clipmodel."):
            continue
        sd[key] = torch.randn(shape, generator=g) * 0.02
    for key in list(sd):
        if key.startswith("clipmodel."):
            sd["clip_adapter." + key] = sd[key]
    return sd


@pytest.mark.slow
def test_manifest_shaped_checkpoint_round_trips_through_the_cli(tmp_path: Path) -> None:
    """A full-size checkpoint in the released layout through `vad import-checkpoint` and back, exactly.

    One preset: the command does the same for both, and what differs by preset is proven without the CLI
    (tests/unit/model/test_official.py: each layout equals its released manifest, tiny round trips of both;
    tests/unit/model/test_reference_parity.py: both imported at full size).
    """
    preset = "ucf"
    sd = random_manifest_state_dict(preset, seed=11)
    torch.save(sd, tmp_path / f"model_{preset}.pth")
    out = tmp_path / f"{preset}.safetensors"
    result = runner.invoke(app, ["import-checkpoint", str(tmp_path / f"model_{preset}.pth"), "--preset", preset,
                                 "-o", str(out)])
    assert result.exit_code == 0, result.output
    bundle = load_bundle(out)
    assert bundle.config.name == preset and bundle.has_image_tower and bundle.has_text_tower
    assert bundle.text_features.shape == (bundle.config.num_classes, 512)
    back = export_official_state_dict(bundle)
    assert back.keys() == sd.keys()
    for key, value in sd.items():
        if key != "disAdj.sigma":
            assert torch.equal(back[key], value), key
    assert save_bundle(bundle, tmp_path / "again.safetensors") == bundle.sha256  # stable digest
