"""PAMR against a slow per-pixel transcription of its definition and the official (float32) computation.

Official code: SCLIP b56bd30 pamr.py (NACLIP 0cac3a6 pamr.py is equivalent): the 8 shift kernels per
dilation with replicate padding (pamr.py:13-58), the local std over the 9|D| window values
(pamr.py:80-106), the affinity ``-aff_x(x) / (1e-8 + 0.1 * x_std)`` divided per channel then averaged over
channels (pamr.py:137-138), the softmax over neighbours (pamr.py:139) and the iterations (pamr.py:141-143),
after resizing the mask bilinearly with align_corners=True (pamr.py:128).
"""

import math

import pytest
import torch
import torch.nn.functional as F
from support.official import pamr as official_pamr

from lseg_pacl.evaluation.pamr import Pamr, pamr, pamr_weights


def _clamp(i, n):
    return min(max(i, 0), n - 1)


def slow_resize(mask, size):
    """Bilinear, align_corners=True (pamr.py:128), one output pixel at a time."""
    b_, c_, h, w = len(mask), len(mask[0]), len(mask[0][0]), len(mask[0][0][0])
    oh, ow = size
    out = [[[[0.0] * ow for _ in range(oh)] for _ in range(c_)] for _ in range(b_)]
    for b in range(b_):
        for c in range(c_):
            for i in range(oh):
                sy = i * (h - 1) / (oh - 1) if oh > 1 else 0.0
                y0 = int(math.floor(sy))
                y1, ly = min(y0 + 1, h - 1), sy - y0
                for j in range(ow):
                    sx = j * (w - 1) / (ow - 1) if ow > 1 else 0.0
                    x0 = int(math.floor(sx))
                    x1, lx = min(x0 + 1, w - 1), sx - x0
                    m = mask[b][c]
                    out[b][c][i][j] = (1 - ly) * ((1 - lx) * m[y0][x0] + lx * m[y0][x1]) + ly * (
                        (1 - lx) * m[y1][x0] + lx * m[y1][x1]
                    )
    return out


def slow_pamr(guide, mask, iterations, dilations):
    """Direct transcription of the definition with Python loops over pixels and neighbours (float64)."""
    x = guide.double().tolist()
    m = mask.double().tolist()
    bsz, k_, h, w = guide.shape
    if tuple(mask.shape[-2:]) != (h, w):
        m = slow_resize(m, (h, w))
    c_ = len(m[0])
    # neighbours in the official order (pamr.py:23-37), one block of 8 per dilation (pamr.py:52-57)
    offsets = [
        (dy * d, dx * d) for d in dilations for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)
    ]
    # window for the std: all 9 positions per dilation, the centre once per dilation (pamr.py:83-96)
    window = [(dy * d, dx * d) for d in dilations for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    weights = [[[None] * w for _ in range(h)] for _ in range(bsz)]
    for b in range(bsz):
        for i in range(h):
            for j in range(w):
                sigma = []
                for k in range(k_):
                    vals = [x[b][k][_clamp(i + oy, h)][_clamp(j + ox, w)] for oy, ox in window]
                    mu = sum(vals) / len(vals)
                    sigma.append(math.sqrt(sum((v - mu) ** 2 for v in vals) / (len(vals) - 1)))
                aff = []
                for oy, ox in offsets:
                    terms = [
                        abs(x[b][k][i][j] - x[b][k][_clamp(i + oy, h)][_clamp(j + ox, w)])
                        / (1e-8 + 0.1 * sigma[k])
                        for k in range(k_)
                    ]
                    aff.append(-sum(terms) / k_)
                top = max(aff)
                e = [math.exp(a - top) for a in aff]
                weights[b][i][j] = [v / sum(e) for v in e]
    for _ in range(iterations):
        new = [[[[0.0] * w for _ in range(h)] for _ in range(c_)] for _ in range(bsz)]
        for b in range(bsz):
            for c in range(c_):
                for i in range(h):
                    for j in range(w):
                        new[b][c][i][j] = sum(
                            wn * m[b][c][_clamp(i + oy, h)][_clamp(j + ox, w)]
                            for wn, (oy, ox) in zip(weights[b][i][j], offsets, strict=True)
                        )
        m = new
    return torch.tensor(m, dtype=torch.float64)


@pytest.fixture
def data():
    gen = torch.Generator().manual_seed(0)
    guide = torch.randn(2, 3, 13, 17, generator=gen, dtype=torch.float64)
    mask = torch.randn(2, 4, 13, 17, generator=gen, dtype=torch.float64)
    small = torch.randn(2, 4, 5, 7, generator=gen, dtype=torch.float64)
    return guide, mask, small


@pytest.mark.parametrize("dilations", [(1, 2), (8, 16)])
def test_matches_slow_definition_float64(data, dilations):
    guide, mask, small = data
    for m in (mask, small):
        for iterations in (0, 1, 3):
            expected = slow_pamr(guide, m, iterations, dilations)
            got = pamr(guide, m, iterations, dilations)
            assert got.dtype == torch.float64 and got.shape == (2, 4, 13, 17)
            assert torch.allclose(got, expected, rtol=1e-10, atol=1e-12), (iterations, m.shape)


def test_iterations_zero_returns_resized_mask(data):
    guide, mask, small = data
    assert torch.equal(pamr(guide, mask, 0), mask)
    resized = F.interpolate(small, size=(13, 17), mode="bilinear", align_corners=True)
    assert torch.equal(pamr(guide, small, 0), resized)


@pytest.mark.parametrize("dilations", [(1, 2), (8, 16), (3,)])
def test_float32_matches_official_pamr(data, dilations):
    guide, _, small = data
    guide, small = guide.float(), small.float()
    got = pamr(guide, small, 10, dilations)
    assert got.dtype == torch.float32
    assert torch.allclose(got, official_pamr(guide, small, 10, dilations), rtol=0, atol=1e-5)


@pytest.mark.parametrize("dilations", [(1, 2), (8, 16)])
def test_constant_guide_gives_uniform_weights(data, dilations):
    _, mask, _ = data
    guide = torch.full((2, 3, 13, 17), 0.7, dtype=torch.float64)
    weights = pamr_weights(guide, dilations)
    assert torch.allclose(weights, torch.full_like(weights, 1 / (8 * len(dilations))), rtol=1e-12, atol=0)
    # one iteration = mean of the 8|D| replicate-padded neighbours (clamped indices, independent of F.pad)
    rows, cols = torch.arange(13), torch.arange(17)
    neighbours = []
    for d in dilations:
        for dy in (-d, 0, d):
            for dx in (-d, 0, d):
                if (dy, dx) != (0, 0):
                    r, c = (rows + dy).clamp(0, 12), (cols + dx).clamp(0, 16)
                    neighbours.append(mask[:, :, r][:, :, :, c])
    expected = torch.stack(neighbours).mean(0)
    assert torch.allclose(pamr(guide, mask, 1, dilations), expected, rtol=1e-12, atol=1e-14)


def test_module_and_dtypes(data):
    guide, mask, small = data
    module = Pamr(3, (1, 2))
    assert torch.equal(module(guide, small), pamr(guide, small, 3, (1, 2)))
    assert "iterations=3" in repr(module)
    # the mask takes the guide's dtype (as the official call sites' logits.to(img.dtype))
    out = pamr(guide, mask.float(), 2, (1,))
    assert out.dtype == torch.float64
    assert torch.allclose(out, pamr(guide, mask.float().double(), 2, (1,)), rtol=1e-12)
    assert pamr(guide.float(), mask, 1).dtype == torch.float32


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"iterations": -1}, "iterations"),
        ({"iterations": 1.5}, "iterations"),
        ({"dilations": ()}, "at least one dilation"),
        ({"dilations": (0,)}, "positive"),
        ({"dilations": (8, -1)}, "positive"),
        ({"dilations": (2.0,)}, "positive"),
    ],
)
def test_argument_errors(data, kwargs, match):
    guide, mask, _ = data
    with pytest.raises(ValueError, match=match):
        pamr(guide, mask, **kwargs)
    with pytest.raises(ValueError, match=match):
        Pamr(**kwargs)


def test_tensor_errors(data):
    guide, mask, _ = data
    with pytest.raises(ValueError, match="4-D"):
        pamr(guide[0], mask)
    with pytest.raises(ValueError, match="4-D"):
        pamr(guide, mask[0])
    with pytest.raises(ValueError, match="batch"):
        pamr(guide, mask[:1])
    with pytest.raises(ValueError, match="floating"):
        pamr(guide.long(), mask)
