"""DSANet configuration: frozen dataclasses filled from the JSON presets in ``model/presets``.

Everything that differs between UCF-Crime and XD-Violence (depth, attention window, adapter
placement, class list, test temperature, training schedule) is a field here, so there is one
network, one trainer and one evaluator.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from model.exceptions import ConfigError

PRESET_NAMES = ("ucf", "xd", "demo")


@dataclass(frozen=True)
class TextTowerConfig:
    """The CLIP text transformer (OpenAI ViT-B/16 layout by default)."""

    width: int = 512
    layers: int = 12
    heads: int = 8
    context_length: int = 77
    vocab_size: int = 49408


@dataclass(frozen=True)
class SGNMConfig:
    """Self-guided normality modelling (training-only branch, spec C.7)."""

    num_prototypes: int = 16
    heads: int = 8
    extractor_depth: int = 1
    decoder_depth: int = 8
    normal_ratio: float = 0.8


@dataclass(frozen=True)
class ClassSpec:
    """One output class: its text descriptions, the dataset label string and a display name."""

    name: str
    descriptions: tuple[str, ...]
    label: str
    display_name: str


@dataclass(frozen=True)
class TrainingConfig:
    """Defaults of the official training scripts (spec C.1, D) and the benchmark file layout (spec A).

    ``batch_layout`` ``"paired"`` is UCF's two loaders (``batch_size`` normal then ``batch_size``
    anomalous sequences per iteration, ``drop_last``); ``"mixed"`` is XD's single shuffled loader
    (last batch kept). ``eval_every`` > 0 evaluates after the iterations ``i > 0`` with
    ``i % eval_every == 0`` (0-based, as the official UCF loop); 0 evaluates at the end of each epoch.
    ``list_prefix`` is the authors' directory prefix of the list paths, replaced by ``--features-root``.
    """

    seed: int = 234
    lr: float = 7e-5
    max_epoch: int = 10
    batch_size: int = 64
    loss2_weight: float = 1.1
    test_crop: int = 5
    select_metric: Literal["auc", "ap"] = "auc"
    eval_every: int = 10
    batch_layout: Literal["paired", "mixed"] = "paired"
    reset_to_best: bool = True
    weight_decay: float = 0.01
    sgnm_weight_decay: float = 1e-4
    sgnm_warmup_iterations: int = 100
    sgnm_final_lr_ratio: float = 0.1
    label_smoothing: float = 0.1
    background_mass: float = 0.01
    list_prefix: str = "/data/VAD/UCFCrime/"
    train_list: str = "ucf_CLIP_rgb.csv"
    test_list: str = "ucf_CLIP_rgbtest.csv"
    gt_file: str = "gt_ucf.npy"
    gt_segment_file: str = "gt_segment_ucf.npy"
    gt_label_file: str = "gt_label_ucf.npy"
    annotation_file: str = "Temporal_Anomaly_Annotation.txt"
    annotation_format: Literal["ucf", "xd"] = "ucf"


@dataclass(frozen=True)
class DSANetConfig:
    """Architecture and dataset description of one DSANet model.

    ``visual_width`` and ``text.width`` are 512 for the released checkpoints; tests use smaller
    widths. ``attn_window`` must divide ``visual_length``.
    """

    name: str
    classes: tuple[ClassSpec, ...]
    dataset: str = ""
    visual_length: int = 256
    visual_width: int = 512
    visual_heads: int = 1
    visual_layers: int = 2
    attn_window: int = 8
    mlp_ratio: int = 4
    text: TextTowerConfig = field(default_factory=TextTowerConfig)
    text_adapt_until: int = 3
    text_mix_weight: float = 0.1
    test_temperature: float = 5.0
    logit_temperature: float = 0.07
    pool_scale: float = 10.0
    similarity_threshold: float = 0.7
    sgnm: SGNMConfig = field(default_factory=SGNMConfig)
    label_format: Literal["one_hot", "multi_hot"] = "one_hot"
    training: TrainingConfig = field(default_factory=TrainingConfig)

    def __post_init__(self) -> None:
        problems = []
        if len(self.classes) < 2:
            problems.append(f"need at least 2 classes (normal first), got {len(self.classes)}")
        if self.visual_length % self.attn_window:
            problems.append(f"attn_window {self.attn_window} must divide visual_length {self.visual_length}")
        if self.visual_width % self.visual_heads or self.visual_width % self.sgnm.heads:
            problems.append(f"visual_width {self.visual_width} must be divisible by the head counts")
        if self.visual_width % 2:
            problems.append(f"visual_width {self.visual_width} must be even (two graph branches of width/2)")
        if not 0 <= self.text_adapt_until <= self.text.layers:
            problems.append(f"text_adapt_until {self.text_adapt_until} must be within 0..{self.text.layers}")
        if problems:
            raise ConfigError(f"invalid DSANet config {self.name!r}: " + "; ".join(problems))

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def class_names(self) -> list[str]:
        return [c.name for c in self.classes]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def replace(self, **changes: Any) -> DSANetConfig:
        """A copy with some top-level fields changed (e.g. a reduced width for tests)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DSANetConfig:
        data = dict(data)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown DSANet config field(s): {', '.join(unknown)}")
        try:
            data["classes"] = tuple(
                ClassSpec(name=c["name"], descriptions=tuple(c["descriptions"]), label=c["label"],
                          display_name=c.get("display_name", c["label"]))
                for c in data["classes"]
            )
            for key, sub in (("text", TextTowerConfig), ("sgnm", SGNMConfig), ("training", TrainingConfig)):
                if key in data and isinstance(data[key], dict):
                    data[key] = sub(**data[key])
            return cls(**data)
        except ConfigError:
            raise
        except (KeyError, TypeError, AttributeError, ValueError, ZeroDivisionError) as exc:  # wrong types in JSON
            raise ConfigError(f"malformed DSANet config: {exc}") from exc


def load_preset(name_or_path: str | Path) -> DSANetConfig:
    """Load a preset by name (``ucf``, ``xd``) or from a JSON file path."""
    text: str
    if str(name_or_path) in PRESET_NAMES:
        text = resources.files("model").joinpath("presets", f"{name_or_path}.json").read_text(encoding="utf-8")
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise ConfigError(f"unknown preset {str(name_or_path)!r}: use one of {', '.join(PRESET_NAMES)} "
                              "or the path of a preset JSON file")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read preset file {path}: {exc}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"preset file {name_or_path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"preset file {name_or_path} must hold a JSON object (a DSANet config), not "
                          f"{type(data).__name__}")
    try:
        return DSANetConfig.from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"preset file {name_or_path}: {exc}") from exc
