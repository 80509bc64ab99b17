"""Inference modes of the benchmark protocols: whole image or sliding window, at several scales, with flips.

``logits_fn(images)`` maps a batch of normalised images [B, 3, h, w] (sides divisible by the patch size) to
class logits at the same size [B, C, h, w]. Everything here returns logits at the image's original resolution
(where the metric is taken), averaged over the windows that overlap a pixel, over scales and over flips.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

LogitsFn = Callable[[torch.Tensor], torch.Tensor]
RESIZE_SIDES = ("short", "long")  # which side Protocol.short_side sets


@dataclass(frozen=True)
class Protocol:
    mode: str = "whole"  # whole | slide
    short_side: int | None = None  # resize so that this side is this long (times each scale); None: as is
    resize: str = "short"  # which side short_side sets: short (SCLIP-style) | long (LSeg's 520 x scale)
    crop: int = 224  # slide: window side
    stride: int = 112  # slide: step between windows
    scales: Sequence[float] = (1.0,)
    flip: bool = False
    patch: int = 16  # the model's patch size: inputs are padded to a multiple of it


def resize_short_side(image: torch.Tensor, side: int, which: str = "short") -> torch.Tensor:
    """Resize keeping the aspect ratio so that the short (or long) side is ``side``."""
    h, w = image.shape[-2:]
    scale = side / (min(h, w) if which == "short" else max(h, w))
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    return image if size == (h, w) else F.interpolate(image, size=size, mode="bilinear", align_corners=False)


def _padded(fn: LogitsFn, image: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad right/bottom with zeros (the mean, after normalisation) to a multiple of the patch size, run,
    cut."""
    h, w = image.shape[-2:]
    ph = -(-h // multiple) * multiple - h
    pw = -(-w // multiple) * multiple - w
    x = F.pad(image, (0, pw, 0, ph)) if ph or pw else image
    return fn(x)[..., :h, :w]


def whole(fn: LogitsFn, image: torch.Tensor, patch: int) -> torch.Tensor:
    return _padded(fn, image, patch)


def window_starts(length: int, crop: int, stride: int) -> list[int]:
    """Window offsets covering [0, length): every ``stride``, the last one flush with the end."""
    if length <= crop:
        return [0]
    starts = list(range(0, length - crop, stride))
    return [*starts, length - crop]


def slide(fn: LogitsFn, image: torch.Tensor, crop: int, stride: int, patch: int) -> torch.Tensor:
    """Windows of ``crop`` every ``stride`` (a side shorter than ``crop``: one window); overlaps averaged."""
    if stride <= 0 or stride > crop:
        raise ValueError(f"slide stride {stride} must be within 1..crop ({crop})")
    h, w = image.shape[-2:]
    total, count = None, torch.zeros(1, 1, h, w, device=image.device)
    for y in window_starts(h, crop, stride):
        for x in window_starts(w, crop, stride):
            window = image[..., y : y + crop, x : x + crop]
            logits = _padded(fn, window, patch)
            if total is None:
                total = torch.zeros(
                    image.shape[0], logits.shape[1], h, w, device=image.device, dtype=logits.dtype
                )
            total[..., y : y + window.shape[-2], x : x + window.shape[-1]] += logits
            count[..., y : y + window.shape[-2], x : x + window.shape[-1]] += 1
    return total / count


# protocol.mode -> how one view is run: the whole image, or overlapping windows
MODES: dict[str, Callable[[LogitsFn, torch.Tensor, Protocol], torch.Tensor]] = {
    "whole": lambda fn, x, p: whole(fn, x, p.patch),
    "slide": lambda fn, x, p: slide(fn, x, p.crop, p.stride, p.patch),
}


def infer(fn: LogitsFn, image: torch.Tensor, protocol: Protocol) -> torch.Tensor:
    """Logits [B, C, H, W] at the original size of ``image`` [B, 3, H, W]: averaged over scales and flips."""
    size = tuple(image.shape[-2:])
    total = None
    views = 0
    for scale in protocol.scales:
        base = protocol.short_side or (min(size) if protocol.resize == "short" else max(size))
        scaled = resize_short_side(image, round(base * scale), protocol.resize)
        for flipped in (False, True) if protocol.flip else (False,):
            x = scaled.flip(-1) if flipped else scaled
            if protocol.mode not in MODES:
                raise ValueError(f"unknown inference mode '{protocol.mode}' ({' | '.join(MODES)})")
            logits = MODES[protocol.mode](fn, x, protocol)
            if flipped:
                logits = logits.flip(-1)
            if tuple(logits.shape[-2:]) != size:
                logits = F.interpolate(logits.float(), size=size, mode="bilinear", align_corners=False)
            total = logits.float() if total is None else total + logits.float()
            views += 1
    return total / views
