"""CLIP preprocessing on uint8 batches: sizes, crop positions, the ten-crop order, normalisation, resize values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workers.encode import preprocess as preprocess_module
from workers.encode.preprocess import OPENAI_MEAN, OPENAI_STD, Preprocessor, crop_origins, resized_size, view_index
from workers.settings import VIEW_NAMES


def coordinate_image(height: int, width: int) -> torch.Tensor:
    """``[1, H, W, 3]`` uint8 whose red channel is the column, green the row and blue 7: every crop is recognisable."""
    rows, cols = np.mgrid[0:height, 0:width]
    return torch.from_numpy(np.stack([cols, rows, np.full_like(rows, 7)], axis=-1).astype(np.uint8))[None]


def unnormalise(x: torch.Tensor) -> torch.Tensor:
    """Back to grey levels ``[..., 3, S, S]`` → ``[..., S, S, 3]``."""
    mean, std = torch.tensor(OPENAI_MEAN).view(3, 1, 1), torch.tensor(OPENAI_STD).view(3, 1, 1)
    return ((x * std + mean) * 255.0).round().movedim(-3, -1)


@pytest.mark.parametrize(("height", "width", "expected"), [
    (240, 320, (224, 298)), (320, 240, (298, 224)), (224, 224, (224, 224)), (1, 1, (224, 224)),
    (3000, 4000, (224, 298)), (64, 96, (224, 336)),
])
def test_resized_size_follows_torchvision_resize(height: int, width: int, expected: tuple[int, int]) -> None:
    assert resized_size(height, width, 224) == expected


def test_crop_origins_centre_then_corners() -> None:
    assert crop_origins(32, 48, 16) == [(8, 16), (0, 0), (0, 32), (16, 0), (16, 32)]
    assert crop_origins(33, 50, 16)[0] == (8, 17)  # round((33-16)/2)=round(8.5)=8 (banker's), like CenterCrop
    assert view_index("center_flip") == 5 and view_index(9) == 9
    with pytest.raises(ValueError, match="unknown view"):
        view_index("middle")


def test_ten_crop_order_and_mirrors() -> None:
    # short side 32 = resize: no interpolation, so each view is an exact slice of the frame
    pre = Preprocessor(image_size=16, resize=32)
    views = unnormalise(pre(coordinate_image(32, 48), views=range(10)))[:, 0]  # [10, 16, 16, 3]
    assert views.shape == (10, 16, 16, 3)
    origins = {"center": (8, 16), "top_left": (0, 0), "top_right": (0, 32), "bottom_left": (16, 0),
               "bottom_right": (16, 32)}
    for k, name in enumerate(VIEW_NAMES):
        top, left = origins[name.removesuffix("_flip")]
        cols = torch.arange(left, left + 16, dtype=torch.float32)
        if name.endswith("_flip"):
            cols = cols.flip(0)
        assert torch.equal(views[k, 0, :, 0], cols), name  # red = column index, mirrored for _flip
        assert torch.equal(views[k, :, 0, 1], torch.arange(top, top + 16, dtype=torch.float32)), name
        assert torch.all(views[k, ..., 2] == 7)


def test_normalisation_of_a_constant_frame_any_size() -> None:
    for height, width in [(1, 1), (64, 96), (300, 200)]:
        frame = torch.full((2, height, width, 3), 200, dtype=torch.uint8)
        frame[..., 1], frame[..., 2] = 10, 128
        out = Preprocessor(32)(frame)
        assert out.shape == (1, 2, 3, 32, 32) and out.dtype == torch.float32
        expected = (torch.tensor([200.0, 10.0, 128.0]) / 255 - torch.tensor(OPENAI_MEAN)) / torch.tensor(OPENAI_STD)
        torch.testing.assert_close(out[0, :, :, 16, 16], expected.expand(2, 3), rtol=0, atol=1e-6)
        torch.testing.assert_close(out.amax(dim=(-1, -2)), out.amin(dim=(-1, -2)))


def test_downscaling_keeps_flat_regions_and_rounds_like_an_8bit_image() -> None:
    # 16x16 blocks of distinct grey levels, halved: block interiors (beyond the bicubic support) stay exact
    blocks = torch.arange(24, dtype=torch.uint8).reshape(4, 6) * 10
    frame = blocks.repeat_interleave(16, 0).repeat_interleave(16, 1)[None, ..., None].expand(1, 64, 96, 3)
    resized = Preprocessor(image_size=32).resize_frames(frame.contiguous())  # short side 64 → 32
    assert resized.shape == (1, 3, 32, 48)
    assert torch.equal(resized, resized.round()) and resized.min() >= 0 and resized.max() <= 255
    interior = resized[0, 0].reshape(4, 8, 6, 8)[:, 3:5, :, 3:5]
    assert torch.equal(interior, blocks.float()[:, None, :, None].expand_as(interior))


def test_close_to_open_clips_pil_transform_on_a_smooth_image() -> None:
    open_clip = pytest.importorskip("open_clip")
    from PIL import Image

    rows, cols = np.mgrid[0:240, 0:320]
    image = np.stack([127 + 100 * np.sin(cols / 17 + c) * np.cos(rows / 23) for c in range(3)], -1).astype(np.uint8)
    reference = open_clip.transform.image_transform(224, is_train=False)(Image.fromarray(image))
    ours = Preprocessor(224)(torch.from_numpy(image)[None])[0, 0]
    # PIL and torch bicubic differ by at most about one grey level on smooth content
    assert (ours - reference).abs().max() < 0.03


def test_matches_open_clips_pil_transform_on_a_noisy_hd_frame() -> None:
    open_clip = pytest.importorskip("open_clip")
    from PIL import Image

    rng = np.random.default_rng(0)
    rows, cols = np.mgrid[0:720, 0:1280]
    smooth = np.stack([127 + 90 * np.sin(cols / 31 + c) * np.cos(rows / 47) for c in range(3)], -1)
    image = np.clip(smooth + rng.normal(0, 12, smooth.shape), 0, 255).astype(np.uint8)  # texture and sensor noise
    reference = open_clip.transform.image_transform(224, is_train=False)(Image.fromarray(image))
    ours = Preprocessor(224)(torch.from_numpy(image)[None])[0, 0]
    # on the CPU the uint8 frame is resized with PIL's arithmetic: differences are rare single grey levels
    assert (ours - reference).abs().mean() < 2e-4
    assert (ours - reference).abs().max() < 0.035


def test_large_frames_are_processed_in_chunks_with_the_same_result(monkeypatch: pytest.MonkeyPatch) -> None:
    frames = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (5, 40, 60, 3), dtype=np.uint8))
    whole = Preprocessor(32)(frames, views=(0, 5))
    monkeypatch.setattr(preprocess_module, "WORKING_BYTES", 1)  # one frame at a time
    torch.testing.assert_close(Preprocessor(32)(frames, views=(0, 5)), whole, rtol=0, atol=0)


def test_bad_inputs() -> None:
    pre = Preprocessor(32)
    with pytest.raises(ValueError, match="uint8 frames"):
        pre(torch.zeros(1, 8, 8, 3))
    with pytest.raises(ValueError, match="uint8 frames"):
        pre(torch.zeros(8, 8, 3, dtype=torch.uint8))
    assert pre(torch.zeros(0, 8, 8, 3, dtype=torch.uint8), views=(0, 1)).shape == (2, 0, 3, 32, 32)
    with pytest.raises(ValueError, match="at least the crop size"):
        Preprocessor(224, resize=200)
