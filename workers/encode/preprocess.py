"""CLIP preprocessing in torch on uint8 frame batches: resize, crop (one view or ten), normalise.

The standard CLIP transform (open_clip's ``image_transform`` for OpenAI models, spec B) is: resize the
short side to the model's image size ``S`` with bicubic interpolation, take the centre ``S x S`` crop,
scale to ``[0, 1]`` and normalise with CLIP's mean and std. Here it runs on tensors: the resize is
``interpolate(mode='bicubic', antialias=True)`` (what torchvision does for tensors). On the CPU it resizes
the uint8 frames themselves, with torch's uint8 kernel that follows PIL's (mean difference 4e-5 after
normalisation on a 720p video; 36x faster than resizing a float copy, which a 720p frame makes 11 MB large);
elsewhere a float copy is resized, rounded and clamped to ``[0, 255]`` as an 8-bit image would be (mean
difference 2e-3). Output sizes and crop offsets follow torchvision's ``Resize`` and ``CenterCrop`` rules.

Views follow the ten-crop layout of the VadCLIP features (spec A.1): index 0 the centre crop, 1-4 the
corners (top-left, top-right, bottom-left, bottom-right), 5-9 the horizontal mirror of views 0-4.
With the default resize (short side = ``S``) the crops coincide along the short side, so corners
differ only along the long side; a larger ``resize`` (e.g. 256 for ``S`` = 224) separates them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from workers.settings import VIEW_NAMES

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
WORKING_BYTES = 256 * 2**20
"""Float working memory one preprocessing step may use; large frames are processed a few at a time."""


def resized_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """``(height, width)`` after resizing the short side to ``short_side`` (torchvision's rule: long side truncated)."""
    if height <= width:
        return short_side, max(1, int(short_side * width / height))
    return max(1, int(short_side * height / width)), short_side


def crop_origins(height: int, width: int, size: int) -> list[tuple[int, int]]:
    """``(top, left)`` of the centre and the four corner ``size x size`` crops of a ``height x width`` image."""
    centre = (round((height - size) / 2.0), round((width - size) / 2.0))  # torchvision's CenterCrop
    bottom, right = height - size, width - size
    return [centre, (0, 0), (0, right), (bottom, 0), (bottom, right)]


def view_index(view: str | int) -> int:
    """Index in the ten-crop layout of a view given by name or index."""
    if isinstance(view, int):
        if not 0 <= view < len(VIEW_NAMES):
            raise ValueError(f"view index must be in [0, {len(VIEW_NAMES)}), got {view}")
        return view
    try:
        return VIEW_NAMES.index(view)
    except ValueError:
        raise ValueError(f"unknown view {view!r}; use one of {', '.join(VIEW_NAMES)}") from None


@dataclass(frozen=True)
class Preprocessor:
    """Turns ``[N, H, W, 3]`` uint8 RGB frames into normalised CLIP inputs, one or more views each.

    Attributes:
        image_size: The model's input size ``S`` (224 for ViT-B/16; read from the CLIP config).
        resize: Short side before cropping; ``None`` means ``image_size`` (the standard transform).
        mean: Per-channel mean of the normalisation (CLIP's by default).
        std: Per-channel std of the normalisation.
    """

    image_size: int
    resize: int | None = None
    mean: tuple[float, float, float] = OPENAI_MEAN
    std: tuple[float, float, float] = OPENAI_STD

    def __post_init__(self) -> None:
        if self.image_size < 1:
            raise ValueError(f"image_size must be positive, got {self.image_size}")
        if self.resize is not None and self.resize < self.image_size:
            raise ValueError(f"resize ({self.resize}) must be at least the crop size {self.image_size}")

    @property
    def short_side(self) -> int:
        return self.resize if self.resize is not None else self.image_size

    def __call__(self, frames: Tensor, views: Sequence[int] = (0,)) -> Tensor:
        """Preprocess frames into the requested views.

        Args:
            frames: ``[N, H, W, 3]`` uint8 RGB (any device; the work happens there).
            views: Ten-crop view indices (0 centre, 1-4 corners, 5-9 mirrored).

        Returns:
            ``[V, N, 3, S, S]`` float32, normalised.
        """
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != torch.uint8:
            raise ValueError(f"expected uint8 frames [N, H, W, 3], got {frames.dtype} {tuple(frames.shape)}")
        views = [view_index(v) for v in views]
        if frames.shape[0] == 0:
            return frames.new_zeros((len(views), 0, 3, self.image_size, self.image_size), dtype=torch.float32)
        parts = [self._views(chunk, views) for chunk in self._chunks(frames)]
        return torch.cat(parts, dim=1)

    def resize_frames(self, frames: Tensor) -> Tensor:
        """``[N, H, W, 3]`` uint8 → ``[N, 3, h, w]`` float32 in ``[0, 255]`` with short side ``short_side``, rounded."""
        x = frames.permute(0, 3, 1, 2)
        height, width = x.shape[-2:]
        size = resized_size(height, width, self.short_side)
        if size == (height, width):
            return x.float()
        if x.device.type == "cpu":  # torch's uint8 antialiased kernel (PIL's arithmetic), no float copy
            return F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True).float()
        x = F.interpolate(x.float(), size=size, mode="bicubic", align_corners=False, antialias=True)
        return x.clamp_(0.0, 255.0).round_()  # what an 8-bit resized image holds

    def _views(self, frames: Tensor, views: list[int]) -> Tensor:
        x = self.resize_frames(frames)
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
        x = (x / 255.0 - mean) / std  # ToTensor then Normalize, in torchvision's order
        origins = crop_origins(x.shape[-2], x.shape[-1], self.image_size)
        out = []
        for view in views:
            top, left = origins[view % 5]
            crop = x[..., top : top + self.image_size, left : left + self.image_size]
            out.append(crop.flip(-1) if view >= 5 else crop)
        return torch.stack(out)

    def _chunks(self, frames: Tensor) -> Iterator[Tensor]:
        n, height, width, _ = frames.shape
        rh, rw = resized_size(height, width, self.short_side)
        full = 0 if frames.device.type == "cpu" else height * width  # a float copy of the input, off the CPU
        per_frame = 3 * 4 * (full + 2 * rh * rw)  # and the resized and the normalised copies
        step = max(1, WORKING_BYTES // per_frame)
        for start in range(0, n, step):
            yield frames[start : start + step]
