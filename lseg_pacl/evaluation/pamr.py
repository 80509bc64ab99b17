"""PAMR, pixel-adaptive mask refinement (Araslanov & Roth, CVPR 2020), as used by SCLIP and NACLIP.

Why: training-free CLIP segmenters produce coarse, patch-sized cosine logits; PAMR diffuses them along the
edges of the normalised input image (each pixel becomes an affinity-weighted average of its dilated
8-neighbours, affinities from local colour contrast), so class boundaries snap to image edges.
NACLIP's paper protocol turns it on: 10 iterations, dilations (8, 16) (NACLIP 0cac3a6 naclip.py:21 defaults,
eval.py:56-57 ``--pamr on`` -> 10 steps, applied at naclip.py:129-132 to the original-size logits with the
bilinearly resized normalised image as guide). SCLIP's code has it but off by default (SCLIP b56bd30
clip_segmentor.py:20 ``pamr_steps=0, pamr_stride=(8, 16)``, applied at clip_segmentor.py:121-123).
The reference is SCLIP pamr.py:117-146 (NACLIP's pamr.py is equivalent), from visinf/1-stage-wseg.

Definition (per pixel p, dilations D, replicate padding everywhere):
  neighbours n: offsets {-d, 0, d}^2 \\ {(0, 0)} for each d in D, 8|D| in all (pamr.py:13-58);
  sigma_k(p) = unbiased std of the 9|D| window values of guide channel k (the centre once per dilation,
  pamr.py:80-106);
  a_n(p) = -mean_k |x_k(p) - x_k(p+n)| / (1e-8 + 0.1 sigma_k(p)) (divided per channel, then averaged,
  pamr.py:135-138);
  w(p) = softmax_n a(p) (pamr.py:139); T times m(p) <- sum_n w_n(p) m(p+n) (pamr.py:141-143).

Differences from the official code, all numerical only: it works in the dtype it is given (the official
kernels and NACLIP's ``torch.empty`` buffer are float32), so float64 calls are exact; it never builds the
[B, K, 8|D|, H, W] or [B, C, 8|D|, H, W] tensors (peak extra memory is about [B, 8|D|, H, W] plus three
[B, C, H, W]), which keeps 2048x1024 images with ~30 classes cheap.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["Pamr", "pamr", "pamr_weights"]

# The 8 neighbours of the official 3x3 shift kernels in their order (row-major, no centre; pamr.py:23-37).
_OFFSETS = tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0))


def _shifts(x: Tensor, d: int, with_centre: bool = False) -> Iterator[Tensor]:
    """Yield x(p + n) for the 8 neighbours n at dilation d, replicate padded (x first if with_centre)."""
    h, w = x.shape[-2:]
    padded = F.pad(x, [d, d, d, d], mode="replicate")
    if with_centre:
        yield x
    for dy, dx in _OFFSETS:
        yield padded[..., d + dy * d : d + dy * d + h, d + dx * d : d + dx * d + w]


def _is_int(v: object) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _check_args(iterations: int, dilations: Sequence[int]) -> tuple[int, ...]:
    if not _is_int(iterations) or iterations < 0:
        raise ValueError(f"PAMR iterations must be an integer >= 0, got {iterations!r}")
    dils = tuple(dilations)
    if not dils:
        raise ValueError("PAMR needs at least one dilation")
    if not all(_is_int(d) and d > 0 for d in dils):
        raise ValueError(f"PAMR dilations must be positive integers, got {dils!r}")
    return tuple(int(d) for d in dils)


def _check(guide: Tensor, mask: Tensor, iterations: int, dilations: Sequence[int]) -> tuple[int, ...]:
    dils = _check_args(iterations, dilations)
    if guide.dim() != 4 or mask.dim() != 4:
        raise ValueError(
            f"PAMR expects 4-D tensors guide [B, K, H, W] and mask [B, C, h, w], got guide shape "
            f"{tuple(guide.shape)} and mask shape {tuple(mask.shape)}"
        )
    if guide.shape[0] != mask.shape[0]:
        raise ValueError(f"PAMR guide and mask batch sizes differ: {guide.shape[0]} vs {mask.shape[0]}")
    if not guide.is_floating_point():
        raise ValueError(f"PAMR guide must be a floating-point tensor, got {guide.dtype}")
    if guide.shape[1] == 0 or guide.shape[-2] == 0 or guide.shape[-1] == 0:
        raise ValueError(f"PAMR guide must have channels and pixels, got shape {tuple(guide.shape)}")
    return dils


def pamr_weights(guide: Tensor, dilations: Sequence[int]) -> Tensor:
    """Softmax affinity weights [B, 8|D|, H, W] of the guide, neighbours in the official order."""
    dilations = _check(guide, guide[:, :1], 0, dilations)
    n = 9 * len(dilations)
    # Local unbiased std per channel over the 9|D| window values, two-pass (mean, then squared deviations).
    mean = torch.zeros_like(guide)
    for d in dilations:
        for v in _shifts(guide, d, with_centre=True):
            mean = mean.add_(v)
    mean = mean.div_(n)
    sq = torch.zeros_like(guide)
    for d in dilations:
        for v in _shifts(guide, d, with_centre=True):
            sq = sq.add_((v - mean).square_())
    denom = 1e-8 + 0.1 * (sq / (n - 1)).sqrt()  # as pamr.py:137
    del mean, sq
    b, _, h, w = guide.shape
    logits = guide.new_empty(b, 8 * len(dilations), h, w)
    i = 0
    for d in dilations:
        for v in _shifts(guide, d):
            logits[:, i] = ((guide - v).abs_().div_(denom)).mean(1).neg_()
            i += 1
    return logits.softmax(1)


def pamr(guide: Tensor, mask: Tensor, iterations: int = 10, dilations: Sequence[int] = (8, 16)) -> Tensor:
    """Refine ``mask`` [B, C, h, w] along the edges of ``guide`` [B, K, H, W]; returns [B, C, H, W].

    The mask is first resized bilinearly (align_corners=True, as pamr.py:128) to the guide's size when the
    sizes differ, and cast to the guide's dtype (both official call sites do ``logits.to(img.dtype)``).
    Everything is computed in the guide's dtype (the official code uses float32 kernels and buffers), so
    float64 inputs give float64-exact results. ``iterations=0`` returns the resized mask unchanged. The guide
    should be the normalised input image. Differentiable in both inputs.
    """
    dils = _check(guide, mask, iterations, dilations)
    mask = mask.to(guide.dtype)
    if mask.shape[-2:] != guide.shape[-2:]:
        mask = F.interpolate(mask, size=guide.shape[-2:], mode="bilinear", align_corners=True)
    if iterations == 0:
        return mask
    weights = pamr_weights(guide, dils)
    for _ in range(iterations):
        out = torch.zeros_like(mask)
        i = 0
        for d in dils:
            for v in _shifts(mask, d):
                out = out.addcmul_(weights[:, i : i + 1], v)
                i += 1
        mask = out
    return mask


class Pamr(torch.nn.Module):
    """Module form of :func:`pamr`, no parameters or buffers: ``Pamr(iterations, dilations)(guide, mask)``."""

    def __init__(self, iterations: int = 10, dilations: Sequence[int] = (8, 16)) -> None:
        super().__init__()
        self.dilations = _check_args(iterations, dilations)
        self.iterations = int(iterations)

    def forward(self, guide: Tensor, mask: Tensor) -> Tensor:
        return pamr(guide, mask, self.iterations, self.dilations)

    def extra_repr(self) -> str:
        return f"iterations={self.iterations}, dilations={self.dilations}"
