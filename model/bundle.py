"""Self-describing model bundles: one safetensors file holding everything inference needs.

Layout of a bundle file (safetensors, no pickle):

* tensors ``dsanet.<key>``: DSANet weights (visual branch, heads, text adapters, SGNM);
* tensor ``text_features``: ``[C, D]`` class embeddings computed once from the text branch, so
  inference needs no text tower;
* tensors ``clip.<key>``: the CLIP weights in OpenAI naming (``visual.*`` image tower, and the
  text tower when available), so workers need no other file;
* string metadata: ``format``, ``format_version``, ``config`` (the full :class:`DSANetConfig`),
  ``class_names``, ``clip`` (open_clip model name, pretrained tag and architecture), ``source``,
  ``demo`` and ``weights_sha256`` (a digest of every tensor's name, dtype, shape and bytes).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from model.clip_checkpoint import has_image_tower, has_text_tower
from model.config import DSANetConfig
from model.exceptions import BundleError

BUNDLE_FORMAT = "dsanet-vad-bundle"
BUNDLE_FORMAT_VERSION = 1

OPENAI_VIT_B_16: dict[str, Any] = {
    "model_name": "ViT-B-16-quickgelu",
    "pretrained": "openai",
    "config": {
        "embed_dim": 512,
        "quick_gelu": True,
        "vision_cfg": {"image_size": 224, "layers": 12, "width": 768, "patch_size": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 512, "heads": 8, "layers": 12},
    },
}


@dataclass
class Bundle:
    """A DSANet model with everything needed to run it.

    Attributes:
        config: architecture, classes and dataset description.
        state_dict: DSANet weights (keys of :class:`model.network.DSANet`).
        text_features: ``[C, D]`` unit class embeddings.
        clip_state_dict: CLIP weights in OpenAI naming (image tower and/or text tower), or empty.
        clip: the CLIP model identity (``model_name``, ``pretrained``, ``config``).
        source: where the weights came from (free-form, e.g. the imported file and its sha256).
        demo: ``True`` for models trained on synthetic data; shown wherever results appear.
        sha256: the weights digest recorded in the bundle file, when loaded from one.
    """

    config: DSANetConfig
    state_dict: dict[str, Tensor]
    text_features: Tensor
    clip_state_dict: dict[str, Tensor] = field(default_factory=dict)
    clip: dict[str, Any] = field(default_factory=lambda: dict(OPENAI_VIT_B_16))
    source: dict[str, Any] = field(default_factory=dict)
    demo: bool = False
    sha256: str | None = None  # as recorded in the file it was loaded from (checked when loaded with verify=True)

    @property
    def class_names(self) -> list[str]:
        return self.config.class_names

    @property
    def has_image_tower(self) -> bool:
        return has_image_tower(self.clip_state_dict)

    @property
    def has_text_tower(self) -> bool:
        return has_text_tower(self.clip_state_dict)

    def tensors(self) -> dict[str, Tensor]:
        """Every tensor under its file key."""
        out = {f"dsanet.{k}": v for k, v in self.state_dict.items()}
        out["text_features"] = self.text_features
        out.update({f"clip.{k}": v for k, v in self.clip_state_dict.items()})
        return out

    def weights_sha256(self) -> str:
        return tensors_sha256(self.tensors())


def tensors_sha256(tensors: Mapping[str, Tensor]) -> str:
    """Digest of names, dtypes, shapes and raw bytes, in sorted name order (independent of file layout)."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool,
}


def file_sha256(path: str | Path) -> str:
    """:func:`tensors_sha256` of a safetensors file, computed from its bytes with ordinary reads.

    The tensors ``load_bundle`` returns map the file; hashing them would make every page of the file resident
    in the process (and keep it so while any tensor lives, e.g. a worker's CLIP tower keeps the mapping, DSANet's
    pages included). Reading the bytes instead leaves the process's memory as it was: only the pages a model
    uses become resident.

    Raises:
        BundleError: The header is unreadable or names a dtype this digest does not know.
    """
    import struct

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        try:
            (size,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(size))
        except (struct.error, ValueError) as exc:
            raise BundleError(f"{path} is not a readable safetensors file: {exc}") from exc
        header.pop("__metadata__", None)
        for name in sorted(header):
            entry = header[name]
            if entry["dtype"] not in SAFETENSORS_DTYPES:
                raise BundleError(f"{path}: tensor {name} has dtype {entry['dtype']}, which bundles do not use")
            digest.update(f"{name}|{SAFETENSORS_DTYPES[entry['dtype']]}|{tuple(entry['shape'])}\n".encode())
            start, end = entry["data_offsets"]
            handle.seek(8 + size + start)
            left = end - start
            while left > 0:
                block = handle.read(min(left, 2**22))
                if not block:
                    raise BundleError(f"{path} is truncated (tensor {name})")
                digest.update(block)
                left -= len(block)
    return digest.hexdigest()


def save_bundle(bundle: Bundle, path: str | Path) -> str:
    """Write ``bundle`` atomically (temp file + rename). Returns the weights sha256."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in bundle.tensors().items()}
    sha = tensors_sha256(tensors)
    metadata = {
        "format": BUNDLE_FORMAT,
        "format_version": str(BUNDLE_FORMAT_VERSION),
        "config": bundle.config.to_json(),
        "class_names": json.dumps(bundle.class_names),
        "clip": json.dumps(bundle.clip, sort_keys=True),
        "source": json.dumps(bundle.source, sort_keys=True),
        "demo": json.dumps(bundle.demo),
        "weights_sha256": sha,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return sha


def read_bundle_metadata(path: str | Path) -> dict[str, Any]:
    """The decoded metadata of a bundle file, without loading its tensors."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise BundleError(f"bundle not found: {path}. Create one with `vad import-checkpoint` or `vad train`.")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
    except Exception as exc:  # safetensors raises several types for corrupt headers
        raise BundleError(f"{path} is not a readable bundle (safetensors header): {exc}") from exc
    if raw.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{path} is not a dsanet-vad bundle (format={raw.get('format')!r}). "
                          "Official .pth checkpoints must first be converted with `vad import-checkpoint`.")
    version = int(raw.get("format_version", "0"))
    if version > BUNDLE_FORMAT_VERSION:
        raise BundleError(f"{path} has bundle format version {version}; this dsanet-vad reads up to "
                          f"{BUNDLE_FORMAT_VERSION}. Upgrade dsanet-vad.")
    meta: dict[str, Any] = {k: json.loads(raw[k]) for k in ("config", "class_names", "clip", "source", "demo")}
    meta["format_version"] = version
    meta["weights_sha256"] = raw["weights_sha256"]
    return meta


def load_bundle(path: str | Path, verify: bool = True, load_clip: bool = True) -> Bundle:
    """Load a bundle (CPU tensors).

    Args:
        path: bundle file.
        verify: recompute the weights sha256 and refuse a mismatch (corrupt or tampered file).
        load_clip: also load the CLIP tensors (skip them when only DSANet inference is needed).
    """
    from safetensors import safe_open

    meta = read_bundle_metadata(path)
    if verify and (actual := file_sha256(path)) != meta["weights_sha256"]:
        raise BundleError(f"{path} fails its checksum (stored {meta['weights_sha256'][:12]}…, "
                          f"computed {actual[:12]}…): the file is corrupt or was modified.")
    dsanet: dict[str, Tensor] = {}
    clip: dict[str, Tensor] = {}
    text: Tensor | None = None
    with safe_open(str(path), framework="pt") as f:  # the tensors map the file: nothing is copied
        for key in f.keys():  # noqa: SIM118 - safe_open handles are not mappings
            if key.startswith("clip.") and not load_clip:
                continue
            tensor = f.get_tensor(key)
            if key.startswith("dsanet."):
                dsanet[key.removeprefix("dsanet.")] = tensor
            elif key.startswith("clip."):
                clip[key.removeprefix("clip.")] = tensor
            elif key == "text_features":
                text = tensor
    if text is None:
        raise BundleError(f"{path} has no text_features tensor; re-create the bundle.")
    return Bundle(
        config=DSANetConfig.from_dict(meta["config"]),
        state_dict=dsanet,
        text_features=text,
        clip_state_dict=clip if load_clip else {},
        clip=meta["clip"],
        source=meta["source"],
        demo=bool(meta["demo"]),
        sha256=meta["weights_sha256"],
    )
