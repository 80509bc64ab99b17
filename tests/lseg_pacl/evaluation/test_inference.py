"""Inference modes: sliding windows, scales and flips average logits correctly."""

import cv2
import pytest
import torch
import torch.nn.functional as F

from lseg_pacl.evaluation.inference import Protocol, infer, slide, target_size, whole, window_starts
from lseg_pacl.evaluation.pamr import pamr


def conv_model(seed=0):
    """A translation-equivariant stand-in for a segmenter: a fixed random 3x3 conv to 5 classes."""
    g = torch.Generator().manual_seed(seed)
    weight = torch.randn(5, 3, 3, 3, generator=g)
    return lambda x, size=None: F.conv2d(x, weight, padding=1)


def global_model(x, size=None):
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

    def fn(images, size):
        seen.append(tuple(images.shape[-2:]))
        return conv_model()(images)

    out = infer(fn, x, Protocol(mode="whole", short_side=32, scales=(0.5, 1.0), patch=8))
    assert out.shape == (1, 5, 40, 60)
    assert seen == [(16, 24), (32, 48)]  # short side 16 and 32, padded to multiples of 8 (already are)


def test_inputs_are_padded_to_the_patch_size_and_cut_back():
    shapes = []

    def fn(images, size):
        shapes.append(tuple(images.shape[-2:]))
        return conv_model()(images)

    out = whole(fn, torch.randn(1, 3, 30, 35), patch=16)
    assert shapes == [(32, 48)] and out.shape == (1, 5, 30, 35)
    with pytest.raises(ValueError, match="stride"):
        slide(fn, torch.randn(1, 3, 30, 35), crop=16, stride=32, patch=16)


def test_long_side_resizing_for_lseg_protocol():
    seen = []

    def fn(images, size):
        seen.append(tuple(images.shape[-2:]))
        return conv_model()(images)

    infer(
        fn,
        torch.randn(1, 3, 40, 80),
        Protocol(mode="whole", short_side=64, resize="long", scales=(0.5,), patch=8),
    )
    assert seen == [(16, 32)]


def mmseg_slide_windows(h, w, crop, stride):
    """The windows of MMSegmentation's slide inference as the lineage copies it (SCLIP
    clip_segmentor.py:96-108, NACLIP naclip.py:87-99): grids = max(h - crop + stride - 1, 0) // stride + 1,
    each window clipped to the image and shifted back to full size."""
    out = []
    for hi in range(max(h - crop + stride - 1, 0) // stride + 1):
        for wi in range(max(w - crop + stride - 1, 0) // stride + 1):
            y2, x2 = min(hi * stride + crop, h), min(wi * stride + crop, w)
            out.append((max(y2 - crop, 0), max(x2 - crop, 0)))
    return out


@pytest.mark.parametrize("h,w", [(336, 500), (336, 448), (200, 336), (560, 1120), (448, 597)])
def test_windows_are_mmsegs(h, w):
    ours = [(y, x) for y in window_starts(h, 224, 112) for x in window_starts(w, 224, 112)]
    assert ours == mmseg_slide_windows(h, w, 224, 112)


def test_cv2_sizes_follow_mmseg_rescale():
    """mmcv rescale_size with scale (2048, S): factor min(2048 / long, S / short), sizes int(x * f + 0.5)."""
    for h, w, s in [(375, 500, 336), (500, 333, 336), (1024, 2048, 560), (281, 500, 448), (100, 9000, 336)]:
        f = min(2048 / max(h, w), s / min(h, w))
        assert target_size(h, w, s, "short", "cv2") == (int(h * f + 0.5), int(w * f + 0.5))


def test_cv2_backend_resizes_8_bits_then_normalises():
    g = torch.Generator().manual_seed(0)
    raw = torch.randint(0, 256, (1, 3, 37, 50), dtype=torch.uint8, generator=g)
    mean, std = (0.48, 0.46, 0.41), (0.27, 0.26, 0.28)
    seen = []

    def fn(x, size):
        seen.append(x.clone())
        return x.mean(1, keepdim=True).expand(-1, 2, -1, -1)

    infer(fn, raw, Protocol(mode="whole", short_side=24, patch=4, resize_backend="cv2"), (mean, std))
    expected = cv2.resize(raw[0].permute(1, 2, 0).numpy(), (32, 24), interpolation=cv2.INTER_LINEAR)
    expected = torch.from_numpy(expected).permute(2, 0, 1).float() / 255
    expected = (expected - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
    assert torch.equal(seen[0][0], expected)
    with pytest.raises(ValueError, match="8-bit"):
        infer(fn, raw.float(), Protocol(mode="whole", patch=4, resize_backend="cv2"))


def test_drop_runs_whole_patches_and_stretches_over_the_window():
    """The official forward_feature: conv1 sees floor(side / patch) patches, and the logits are interpolated
    to the window's full size (NACLIP naclip.py:54-69)."""
    calls = []

    def fn(x, size):
        calls.append((tuple(x.shape[-2:]), size))
        return F.interpolate(x[:, :2, ::4, ::4], size=size, mode="bilinear", align_corners=False)

    x = torch.randn(1, 3, 30, 43)
    out = infer(fn, x, Protocol(mode="whole", patch=4, remainder="drop"))
    assert calls == [((28, 40), (30, 43))] and out.shape == (1, 2, 30, 43)
    expected = F.interpolate(x[:, :2, :28:4, :40:4], size=(30, 43), mode="bilinear", align_corners=False)
    assert torch.allclose(out, expected)


def test_pamr_refines_each_view_guided_by_the_resized_input():
    x = torch.randn(1, 3, 20, 30)
    fn = conv_model(2)
    p = Protocol(mode="whole", short_side=16, patch=4)
    plain = infer(fn, x, p)
    refined = infer(fn, x, Protocol(mode="whole", short_side=16, patch=4, pamr_iterations=3,
                                    pamr_dilations=(1, 2)))
    scaled = F.interpolate(x, size=(16, 24), mode="bilinear", align_corners=False)
    guide = F.interpolate(scaled, size=(20, 30), mode="bilinear", align_corners=False)
    assert torch.allclose(refined, pamr(guide, plain, 3, (1, 2)), atol=1e-6)
    assert not torch.allclose(refined, plain)


def test_a_method_s_image_level_step_sees_merged_logits_and_the_resized_input():
    x = torch.randn(1, 3, 20, 30)
    calls = []

    def refine(guide, logits):
        calls.append((guide.clone(), logits.clone()))
        return logits * 2

    p = Protocol(mode="slide", short_side=16, crop=16, stride=8, patch=4)
    plain = infer(conv_model(3), x, p)
    out = infer(conv_model(3), x, p, refine=refine)
    scaled = F.interpolate(x, size=(16, 24), mode="bilinear", align_corners=False)
    assert len(calls) == 1 and torch.allclose(calls[0][1], plain)  # once, on the merged, upsampled logits
    guide = F.interpolate(scaled, size=(20, 30), mode="bilinear", align_corners=False)
    assert torch.allclose(calls[0][0], guide)
    assert torch.allclose(out, 2 * plain)
