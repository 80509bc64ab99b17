"""Inference modes: sliding windows, scales and flips average logits correctly."""

import pytest
import torch
import torch.nn.functional as F

from lseg_pacl.evaluation.inference import Protocol, infer, slide, whole, window_starts


def conv_model(seed=0):
    """A translation-equivariant stand-in for a segmenter: a fixed random 3x3 conv to 5 classes."""
    g = torch.Generator().manual_seed(seed)
    weight = torch.randn(5, 3, 3, 3, generator=g)
    return lambda x: F.conv2d(x, weight, padding=1)


def global_model(x):
    """Logits that depend on the whole input (like attention): the per-channel mean, broadcast."""
    return x.mean((-2, -1), keepdim=True).repeat(1, 2, x.shape[-2], x.shape[-1])[:, :5]


def test_window_starts_cover_the_image():
    assert window_starts(100, 224, 112) == [0]
    assert window_starts(448, 224, 112) == [0, 112, 224]
    assert window_starts(500, 224, 112) == [0, 112, 224, 276]


def test_one_window_equal_to_the_image_is_whole_image_inference():
    x = torch.randn(1, 3, 32, 48)
    for fn in (conv_model(), global_model):
        a = infer(fn, x, Protocol(mode="slide", crop=48, stride=16, patch=16))
        b = infer(fn, x, Protocol(mode="whole", patch=16))
        assert torch.allclose(a, b)


def test_overlapping_windows_average():
    x = torch.randn(1, 3, 32, 64)
    out = slide(global_model, x, crop=32, stride=16, patch=16)  # windows at 0, 16, 32
    means = [x[..., :, s:s + 32].mean((-2, -1)) for s in (0, 16, 32)]
    col = lambda c: out[0, :3, 0, c]  # noqa: E731
    assert torch.allclose(col(0), means[0][0]) and torch.allclose(col(63), means[2][0])
    assert torch.allclose(col(20), (means[0][0] + means[1][0]) / 2)
    assert torch.allclose(col(40), (means[1][0] + means[2][0]) / 2)


def test_flip_averaging_is_flip_equivariant():
    x = torch.randn(1, 3, 32, 48)
    p = Protocol(mode="whole", flip=True, patch=16)
    fn = conv_model(1)
    assert torch.allclose(infer(fn, x.flip(-1), p), infer(fn, x, p).flip(-1), atol=1e-5)
    assert not torch.allclose(infer(fn, x, p), infer(fn, x, Protocol(mode="whole", patch=16)))


def test_scales_resize_and_return_the_original_size():
    x = torch.randn(1, 3, 40, 60)
    seen = []

    def fn(images):
        seen.append(tuple(images.shape[-2:]))
        return conv_model()(images)

    out = infer(fn, x, Protocol(mode="whole", short_side=32, scales=(0.5, 1.0), patch=8))
    assert out.shape == (1, 5, 40, 60)
    assert seen == [(16, 24), (32, 48)]  # short side 16 and 32, padded to multiples of 8 (already are)


def test_inputs_are_padded_to_the_patch_size_and_cut_back():
    shapes = []

    def fn(images):
        shapes.append(tuple(images.shape[-2:]))
        return conv_model()(images)

    out = whole(fn, torch.randn(1, 3, 30, 35), patch=16)
    assert shapes == [(32, 48)] and out.shape == (1, 5, 30, 35)
    with pytest.raises(ValueError, match="stride"):
        slide(fn, torch.randn(1, 3, 30, 35), crop=16, stride=32, patch=16)


def test_long_side_resizing_for_lseg_protocol():
    seen = []

    def fn(images):
        seen.append(tuple(images.shape[-2:]))
        return conv_model()(images)

    infer(
        fn,
        torch.randn(1, 3, 40, 80),
        Protocol(mode="whole", short_side=64, resize="long", scales=(0.5,), patch=8),
    )
    assert seen == [(16, 32)]
