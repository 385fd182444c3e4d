"""Importing the authors' checkpoints: key mapping, refusals, round trips (the same at full size through
`vad import-checkpoint`: tests/integration/test_cli_model.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model.config import load_preset
from model.exceptions import CheckpointError
from model.official import (
    detect_preset,
    expected_layout,
    export_official_state_dict,
    import_official_checkpoint,
    read_official_checkpoint,
    split_official_state_dict,
)
from tests.conftest import TINY_CLIP, official_manifest, tiny_bundle, tiny_config


def test_expected_layout_equals_the_official_manifest(preset: str) -> None:
    layout = expected_layout(load_preset(preset))
    ours = dict(layout.dsanet)
    ours["disAdj.sigma"] = (1,)
    for prefix in ("clipmodel.", "clip_adapter.clipmodel."):
        ours.update({prefix + k: v for k, v in layout.clip.items()})
    assert ours == official_manifest(preset)


def test_detect_preset_from_manifest_keys(preset: str) -> None:
    assert detect_preset(dict.fromkeys(official_manifest(preset))) == preset
    assert detect_preset({"something": torch.zeros(1)}) is None


def _tiny_official(preset: str = "ucf") -> tuple[dict, object]:
    bundle = tiny_bundle(preset)
    return export_official_state_dict(bundle), bundle


def _tiny_layout(preset: str = "ucf"):
    return expected_layout(tiny_config(preset), TINY_CLIP)


def test_split_keeps_one_clip_copy_and_drops_the_unused_sigma() -> None:
    sd, bundle = _tiny_official()
    dsanet, clip = split_official_state_dict(sd, _tiny_layout())
    assert dsanet.keys() == bundle.state_dict.keys()
    assert clip.keys() == bundle.clip_state_dict.keys()
    assert not any(k.startswith("clip") and "text_adapter" not in k for k in dsanet)


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda sd: sd.pop("gc2.weight"), "1 missing keys: gc2.weight"),
    (lambda sd: sd.pop("clip_adapter.clipmodel.ln_final.bias"), "missing keys: clip_adapter.clipmodel.ln_final.bias"),
    (lambda sd: sd.__setitem__("temporal.resblocks.7.ln_1.weight", torch.zeros(64)),
     "unexpected keys: temporal.resblocks.7.ln_1.weight"),
    (lambda sd: sd.__setitem__("clipmodel.extra", torch.zeros(1)), "unexpected keys: clipmodel.extra"),
    (lambda sd: sd.__setitem__("classifier.weight", torch.zeros(2, 64)),
     r"classifier.weight \(2, 64\) \(expected \(1, 64\)\)"),
    (lambda sd: sd.__setitem__("clip_adapter.clipmodel.ln_final.weight", torch.full((64,), 3.0)),
     "CLIP tensors differ .*ln_final.weight"),
])
def test_refuses_mismatches_with_a_clear_message(mutate, message: str) -> None:
    sd, _ = _tiny_official()
    mutate(sd)
    with pytest.raises(CheckpointError, match=message):
        split_official_state_dict(sd, _tiny_layout())


def test_read_unwraps_training_checkpoints_and_dataparallel(tmp_path: Path) -> None:
    sd, _ = _tiny_official()
    wrapped = {"epoch": 3, "ap": 0.9, "model_state_dict": {"module." + k: v for k, v in sd.items()}}
    torch.save(wrapped, tmp_path / "checkpoint.pth")
    assert read_official_checkpoint(tmp_path / "checkpoint.pth").keys() == sd.keys()


def test_read_refuses_pickled_code_and_junk(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="weights_only"):
        read_official_checkpoint(tmp_path / "evil.pth")
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(CheckpointError):
        read_official_checkpoint(tmp_path / "junk.pth")
    torch.save({"a": 1}, tmp_path / "notensors.pth")
    with pytest.raises(CheckpointError, match="flat state dict"):
        read_official_checkpoint(tmp_path / "notensors.pth")
    with pytest.raises(CheckpointError, match="not found"):
        read_official_checkpoint(tmp_path / "absent.pth")


def test_wrong_preset_is_named(tmp_path: Path) -> None:
    sd, _ = _tiny_official("xd")
    torch.save(sd, tmp_path / "model_xd.pth")
    with pytest.raises(CheckpointError, match="pass --preset xd"):
        import_official_checkpoint(tmp_path / "model_xd.pth", "ucf", TINY_CLIP)


def test_tiny_import_round_trip_recomputes_the_same_text_features(tmp_path: Path, preset: str) -> None:
    sd, bundle = _tiny_official(preset)
    torch.save(sd, tmp_path / "official.pth")
    imported = import_official_checkpoint(tmp_path / "official.pth", tiny_config(preset), TINY_CLIP)
    torch.testing.assert_close(imported.text_features, bundle.text_features)
    assert imported.source["kind"] == "official-checkpoint" and len(imported.source["file_sha256"]) == 64
    back = export_official_state_dict(imported)
    assert back.keys() == sd.keys()
    assert all(torch.equal(back[k], sd[k]) for k in sd)
