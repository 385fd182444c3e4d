"""A display matrix's orientation, read as FFmpeg's autorotate reads it: a rotation and, if it mirrors, a flip."""

from __future__ import annotations

import math

import numpy as np
import pytest

from workers.video.plan import rotation_alone, upright
from workers.video.pyav_io import matrix_orientation

ONE = 1 << 16


def display_matrix(clockwise: int, hflip: bool) -> list[int]:
    """What FFmpeg writes: av_display_rotation_set(-clockwise), then av_display_matrix_flip(hflip, 0)."""
    theta = math.radians(-clockwise)
    a, b, c, d = (round(ONE * v) for v in (math.cos(theta), -math.sin(theta), math.sin(theta), math.cos(theta)))
    if hflip:
        a, c = -a, -c
    return [a, b, 0, c, d, 0, 0, 0, 1 << 30]


@pytest.mark.parametrize("hflip", [False, True])
@pytest.mark.parametrize("clockwise", [0, 90, 180, 270])
def test_every_orientation_of_the_eight_is_read_back(clockwise: int, hflip: bool) -> None:
    assert matrix_orientation(display_matrix(clockwise, hflip)) == (clockwise, hflip)


def test_a_degenerate_matrix_has_no_orientation() -> None:
    assert matrix_orientation([0] * 8 + [1 << 30]) is None


@pytest.mark.parametrize("clockwise", [0, 90, 180, 270])
def test_rotation_alone_is_what_av_display_rotation_get_reads(clockwise: int) -> None:
    a, b, _, c, d, *_ = display_matrix(clockwise, hflip=True)
    ccw = -math.degrees(math.atan2(b / math.hypot(b, d), a / math.hypot(a, c)))  # av_display_rotation_get
    assert rotation_alone(clockwise, True) == round(-ccw / 90) % 4 * 90
    assert rotation_alone(clockwise, False) == clockwise


def test_upright_turns_then_mirrors() -> None:
    image = np.arange(2 * 3 * 1).reshape(2, 3, 1)  # [H, W, C]: rows [0 1 2] and [3 4 5]
    assert upright(image, 0, hflip=True)[..., 0].tolist() == [[2, 1, 0], [5, 4, 3]]
    assert upright(image, 90)[..., 0].tolist() == [[3, 0], [4, 1], [5, 2]]  # clockwise
    assert upright(image, 90, hflip=True)[..., 0].tolist() == [[0, 3], [1, 4], [2, 5]]  # a transpose (EXIF 5)
