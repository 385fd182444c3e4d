"""Bundle files: round trip, checksum, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from model.bundle import (
    BUNDLE_FORMAT_VERSION,
    file_sha256,
    load_bundle,
    read_bundle_metadata,
    save_bundle,
    tensors_sha256,
)
from model.exceptions import BundleError
from model.factory import create_model
from tests.conftest import tiny_bundle


def test_round_trip_preserves_everything(tmp_path: Path, preset: str) -> None:
    bundle = tiny_bundle(preset)
    path = tmp_path / "m.safetensors"
    sha = save_bundle(bundle, path)
    assert sha == bundle.weights_sha256()
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temp file left behind
    loaded = load_bundle(path)
    assert loaded.config == bundle.config and loaded.class_names == bundle.class_names
    assert loaded.clip == bundle.clip and loaded.source == bundle.source and loaded.demo is False
    assert loaded.sha256 == sha and loaded.has_image_tower and loaded.has_text_tower
    assert torch.equal(loaded.text_features, bundle.text_features)
    for key, value in bundle.state_dict.items():
        assert torch.equal(loaded.state_dict[key], value), key
    assert loaded.clip_state_dict.keys() == bundle.clip_state_dict.keys()
    meta = read_bundle_metadata(path)
    assert meta["format_version"] == BUNDLE_FORMAT_VERSION and meta["class_names"] == bundle.class_names


def test_model_from_bundle_reproduces_outputs(tmp_path: Path) -> None:
    bundle = tiny_bundle("xd", seed=7)
    save_bundle(bundle, tmp_path / "b.safetensors")
    original = create_model(bundle.config, bundle)
    reloaded = create_model("ucf", tmp_path / "b.safetensors")  # the bundle's own config wins
    assert reloaded.cfg.name == "xd"
    x = torch.randn(1, 256, 64)
    with torch.no_grad():
        a = original(x, torch.tensor([90]), bundle.text_features)
        b = reloaded(x, torch.tensor([90]), bundle.text_features)
    assert torch.equal(a.logits2, b.logits2)
    with_tower = create_model(None, tmp_path / "b.safetensors", with_text_tower=True)
    with torch.no_grad():
        torch.testing.assert_close(with_tower.text_encoder(), bundle.text_features)


def test_checksum_detects_modified_weights(tmp_path: Path) -> None:
    path = tmp_path / "b.safetensors"
    save_bundle(tiny_bundle("ucf"), path)
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF  # a byte inside the last tensor's data
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="checksum"):
        load_bundle(path)
    load_bundle(path, verify=False)  # still readable when the user opts out


def test_not_a_bundle(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    with pytest.raises(BundleError, match="not found"):
        load_bundle(tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(BundleError, match="not a readable bundle"):
        load_bundle(tmp_path / "junk.safetensors")
    save_file({"x": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(BundleError, match="import-checkpoint"):
        load_bundle(tmp_path / "other.safetensors")


def test_newer_format_version_is_refused(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    meta = {"format": "dsanet-vad-bundle", "format_version": str(BUNDLE_FORMAT_VERSION + 1)}
    save_file({"text_features": torch.zeros(2, 2)}, str(tmp_path / "future.safetensors"), metadata=meta)
    with pytest.raises(BundleError, match="Upgrade"):
        read_bundle_metadata(tmp_path / "future.safetensors")


def test_sha256_depends_on_names_shapes_and_values() -> None:
    base = {"a": torch.zeros(2, 3), "b": torch.ones(1)}
    assert tensors_sha256(base) == tensors_sha256(dict(reversed(list(base.items()))))
    assert tensors_sha256(base) != tensors_sha256({"a": torch.zeros(3, 2), "b": torch.ones(1)})
    assert tensors_sha256(base) != tensors_sha256({"c": torch.zeros(2, 3), "b": torch.ones(1)})
    assert tensors_sha256(base) != tensors_sha256({"a": torch.zeros(2, 3), "b": torch.full((1,), 2.0)})
    assert tensors_sha256({"s": torch.tensor(4.6)}) != tensors_sha256({"s": torch.tensor(4.7)})


def test_config_in_metadata_is_the_full_config(tmp_path: Path) -> None:
    bundle = tiny_bundle("xd")
    save_bundle(bundle, tmp_path / "b.safetensors")
    cfg = read_bundle_metadata(tmp_path / "b.safetensors")["config"]
    assert cfg["attn_window"] == 64 and cfg["test_temperature"] == 1.0
    assert json.dumps(cfg, sort_keys=True) == bundle.config.to_json()


def test_the_files_digest_is_the_tensors_digest(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    tensors = {"b.scalar": torch.tensor(4.5), "a.half": torch.randn(3, 2).half(), "c.bf16": torch.randn(4).bfloat16(),
               "d.int": torch.arange(6).reshape(2, 3), "e.bool": torch.tensor([True, False]),
               "f.empty": torch.zeros(0, 3), "g.big": torch.randn(1100, 1000)}  # more than one 4 MiB read
    save_file(tensors, tmp_path / "t.safetensors", metadata={"format": "x"})
    assert file_sha256(tmp_path / "t.safetensors") == tensors_sha256(tensors)
