"""Reduced-size JPEG decoding: only as small as the transform allows, and only for JPEGs."""

import io

import numpy as np
import pytest
from PIL import Image

from data_modules.images import read_rgb
from data_modules.transforms import caption_train_transform


def encoded(fmt: str, w: int = 640, h: int = 480) -> bytes:
    """Smooth colour fields, like a photograph at this scale."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    rgb = np.stack([128 + 100 * np.sin(x / (17 + 9 * c) + y / (23 + 5 * c)) for c in range(3)], -1)
    buf = io.BytesIO()
    Image.fromarray(rgb.astype(np.uint8)).save(buf, fmt)
    return buf.getvalue()


@pytest.mark.parametrize("factor,shape", [(1.0, (480, 640)), (1.9, (480, 640)), (2.5, (240, 320)),
                                          (4.0, (120, 160)), (100.0, (60, 80))])
def test_a_jpeg_decodes_at_the_largest_allowed_reduction(factor, shape):
    assert read_rgb(encoded("JPEG"), reduction=lambda w, h: factor).shape == (*shape, 3)


def test_other_formats_decode_in_full():
    assert read_rgb(encoded("PNG"), reduction=lambda w, h: 4.0).shape == (480, 640, 3)


@pytest.mark.parametrize("scale_min,size,expected", [(1.0, 224, 480 / 224), (1.0, 480, 1.0),
                                                     (0.5, 224, (0.75 * 0.5 * 640 * 480) ** 0.5 / 224),
                                                     (0.08, 64, (0.75 * 0.08 * 640 * 480) ** 0.5 / 64)])
def test_the_allowed_reduction_keeps_the_smallest_crop_at_least_the_output(scale_min, size, expected):
    t = caption_train_transform(size, (0.5,) * 3, (0.5,) * 3, scale_min=scale_min)
    assert t.max_decode_reduction(640, 480) == pytest.approx(expected)
    off = caption_train_transform(size, (0.5,) * 3, (0.5,) * 3, scale_min=scale_min, reduced_decode=False)
    assert off.max_decode_reduction(640, 480) == 1.0


def test_a_reduced_decode_gives_nearly_the_same_training_input():
    data = encoded("JPEG", 896, 672)
    t = caption_train_transform(224, (0.5,) * 3, (0.5,) * 3, scale_min=1.0, hflip=False)
    small = read_rgb(data, reduction=t.max_decode_reduction)
    assert small.shape == (336, 448, 3)  # 672 / 224 = 3: libjpeg's 1/2 scale, the largest allowed
    full = t(image=read_rgb(data))["image"]
    reduced = t(image=small)["image"]
    assert reduced.shape == full.shape == (3, 224, 224)
    assert float((reduced - full).abs().mean()) < 0.02  # in units of the normalised input (range 4)
