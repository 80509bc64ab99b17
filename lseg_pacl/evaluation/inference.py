"""Inference modes of the benchmark protocols: whole image or sliding window, at several scales, with flips.

``logits_fn(images, size)`` maps a batch of normalised images [B, 3, h, w] to logits at ``size``
[B, C, *size].
Everything here returns logits at the image's original resolution (where the metric is taken), averaged over
the windows that overlap a pixel, over scales and over flips.

What the SCLIP lineage's code does, reachable through ``Protocol`` (docs/evaluation.md#official-protocols):
``resize_backend="cv2"`` resizes the 8-bit image with OpenCV to sizes int(x + 0.5), long side at most 2048, as
MMSegmentation's ``Resize(scale=(2048, S), keep_ratio=True)``, before normalising; ``remainder="drop"`` runs a
window whose sides do not divide by the patch size on its whole patches only and stretches the logits over the
window (the patch embedding's convolution drops the remainder there); ``pamr_iterations`` refines each view's
logits with PAMR at the original size, guided by the resized input upsampled back (SCLIP ``clip_segmentor.py:
118-123``, NACLIP ``naclip.py:126-135``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from lseg_pacl.evaluation.pamr import pamr

LogitsFn = Callable[[torch.Tensor, tuple[int, int]], torch.Tensor]
RefineFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (guide, logits at the original size)
RESIZE_SIDES = ("short", "long")  # which side Protocol.short_side sets
RESIZE_BACKENDS = ("torch", "cv2")
REMAINDERS = ("pad", "drop")
LONGEST_SIDE = 2048  # MMSegmentation's Resize(scale=(2048, S)): the long side never exceeds this


@dataclass(frozen=True)
class Protocol:
    mode: str = "whole"  # whole | slide | centre (the centred square of the resized image, GT cropped alike)
    short_side: int | None = None  # resize so that this side is this long (times each scale); None: as is
    resize: str = "short"  # which side short_side sets: short (SCLIP-style) | long (LSeg's 520 x scale)
    crop: int = 224  # slide: window side
    stride: int = 112  # slide: step between windows
    scales: Sequence[float] = (1.0,)
    flip: bool = False
    patch: int = 16  # the model's patch size
    remainder: str = "pad"  # pad: zero-pad to whole patches and cut | drop: whole patches only, stretched
    resize_backend: str = "torch"  # torch: bilinear on the normalised image | cv2: OpenCV on the 8-bit image
    pamr_iterations: int = 0  # 0: off
    pamr_dilations: Sequence[int] = (8, 16)

    def __post_init__(self) -> None:
        for value, allowed, key in ((self.mode, MODES, "mode"), (self.resize, RESIZE_SIDES, "resize"),
                                    (self.remainder, REMAINDERS, "remainder"),
                                    (self.resize_backend, RESIZE_BACKENDS, "resize_backend")):
            if value not in allowed:
                raise ValueError(f"unknown inference {key} '{value}' ({' | '.join(allowed)})")


def target_size(h: int, w: int, side: float, which: str = "short", backend: str = "torch") -> tuple[int, int]:
    """The resized (h, w) keeping the aspect ratio so that the short (or long) side is ``side``: Python
    rounding (torch), or MMSegmentation's rule (cv2: int(x + 0.5), the long side capped at 2048)."""
    scale = side / (min(h, w) if which == "short" else max(h, w))
    if backend == "cv2":
        if which == "short":
            scale = min(scale, LONGEST_SIDE / max(h, w))
        return max(1, int(h * scale + 0.5)), max(1, int(w * scale + 0.5))
    return max(1, round(h * scale)), max(1, round(w * scale))


def resize_short_side(image: torch.Tensor, side: int, which: str = "short") -> torch.Tensor:
    """Resize keeping the aspect ratio so that the short (or long) side is ``side`` (bilinear, torch)."""
    h, w = image.shape[-2:]
    size = target_size(h, w, side, which)
    return image if size == (h, w) else F.interpolate(image, size=size, mode="bilinear", align_corners=False)


def resize_8bit(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """OpenCV bilinear on each 8-bit image [B, 3, H, W] (uint8), as MMSegmentation's test pipeline does."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    out = [cv2.resize(np.ascontiguousarray(im.permute(1, 2, 0).cpu().numpy()), (size[1], size[0]),
                      interpolation=cv2.INTER_LINEAR) for im in image]
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).to(image.device)


def _padded(fn: LogitsFn, image: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad right/bottom with zeros (the mean, after normalisation) to a multiple of the patch size, run,
    cut."""
    h, w = image.shape[-2:]
    ph = -(-h // multiple) * multiple - h
    pw = -(-w // multiple) * multiple - w
    x = F.pad(image, (0, pw, 0, ph)) if ph or pw else image
    return fn(x, (h + ph, w + pw))[..., :h, :w]


def _dropped(fn: LogitsFn, image: torch.Tensor, multiple: int) -> torch.Tensor:
    """Run the whole patches only (the trailing rows/columns dropped) and stretch the logits over the
    window."""
    h, w = image.shape[-2:]
    hh, ww = h // multiple * multiple, w // multiple * multiple
    if not hh or not ww:
        raise ValueError(f"a {h}x{w} window holds no whole {multiple}-pixel patch")
    return fn(image[..., :hh, :ww], (h, w))


def run_window(fn: LogitsFn, image: torch.Tensor, protocol: Protocol) -> torch.Tensor:
    """Logits at the window's own size, by the protocol's rule for sides that do not divide by the patch."""
    return (_dropped if protocol.remainder == "drop" else _padded)(fn, image, protocol.patch)


def whole(fn: LogitsFn, image: torch.Tensor, patch: int, remainder: str = "pad") -> torch.Tensor:
    return run_window(fn, image, Protocol(patch=patch, remainder=remainder))


def window_starts(length: int, crop: int, stride: int) -> list[int]:
    """Window offsets covering [0, length): every ``stride``, the last one flush with the end (the same
    windows as MMSegmentation's slide inference)."""
    if length <= crop:
        return [0]
    starts = list(range(0, length - crop, stride))
    return [*starts, length - crop]


def slide(fn: LogitsFn, image: torch.Tensor, crop: int, stride: int, patch: int,
          remainder: str = "pad") -> torch.Tensor:
    """Windows of ``crop`` every ``stride`` (a side shorter than ``crop``: one window); overlaps averaged."""
    if stride <= 0 or stride > crop:
        raise ValueError(f"slide stride {stride} must be within 1..crop ({crop})")
    proto = Protocol(patch=patch, remainder=remainder)
    h, w = image.shape[-2:]
    total, count = None, torch.zeros(1, 1, h, w, device=image.device)
    for y in window_starts(h, crop, stride):
        for x in window_starts(w, crop, stride):
            window = image[..., y : y + crop, x : x + crop]
            logits = run_window(fn, window, proto)
            if total is None:
                total = torch.zeros(
                    image.shape[0], logits.shape[1], h, w, device=image.device, dtype=logits.dtype
                )
            total[..., y : y + window.shape[-2], x : x + window.shape[-1]] += logits
            count[..., y : y + window.shape[-2], x : x + window.shape[-1]] += 1
    return total / count


# protocol.mode -> how one view is run: the whole image, or overlapping windows
MODES: dict[str, Callable[[LogitsFn, torch.Tensor, Protocol], torch.Tensor]] = {
    "whole": lambda fn, x, p: run_window(fn, x, p),
    # CLIPtrase: the data is the centred short_side square (and its ground truth), run whole
    "centre": lambda fn, x, p: run_window(fn, x, p),
    "slide": lambda fn, x, p: slide(fn, x, p.crop, p.stride, p.patch, p.remainder),
}


Normalisation = tuple[Sequence[float], Sequence[float]]


def _wide(t: torch.Tensor) -> torch.Tensor:
    """At least float32 (logits of half-precision models are averaged and refined in float32)."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


def _normalised(image: torch.Tensor, normalisation: Normalisation) -> torch.Tensor:
    """(x / 255 - mean) / std in torch's default float type."""
    mean = torch.tensor(normalisation[0], device=image.device).view(1, -1, 1, 1)
    std = torch.tensor(normalisation[1], device=image.device).view(1, -1, 1, 1)
    return (image.to(torch.get_default_dtype()) / 255 - mean) / std


def _views(image: torch.Tensor, protocol: Protocol, normalisation: Normalisation | None):
    """(scale, normalised resized image) per scale. ``image`` is normalised already, or, with a
    ``normalisation``, the 8-bit image (required by the cv2 backend)."""
    if protocol.resize_backend == "cv2" and normalisation is None:
        raise ValueError("resize_backend=cv2 resizes the 8-bit image: pass it with its normalisation")
    size = tuple(image.shape[-2:])
    for scale in protocol.scales:
        base = protocol.short_side or (min(size) if protocol.resize == "short" else max(size))
        target = target_size(*size, base * scale, protocol.resize, protocol.resize_backend)
        if protocol.resize_backend == "cv2":
            yield _normalised(resize_8bit(image, target), normalisation)
            continue
        x = _normalised(image, normalisation) if normalisation is not None else image
        yield x if target == size else F.interpolate(x, size=target, mode="bilinear", align_corners=False)


def infer(fn: LogitsFn, image: torch.Tensor, protocol: Protocol,
          normalisation: Normalisation | None = None, refine: RefineFn | None = None) -> torch.Tensor:
    """Logits [B, C, H, W] at the original size of ``image`` [B, 3, H, W]: averaged over scales and flips.

    ``image`` is the normalised image, or with ``normalisation`` = (mean, std) the 8-bit one (values 0..255).
    ``refine(guide, logits)`` is a method's image-level step, run on each view at the original size before
    PAMR, with the same guide (the resized input brought back to the original size).
    """
    size = tuple(image.shape[-2:])
    total = None
    views = 0
    for scaled in _views(image, protocol, normalisation):
        for flipped in (False, True) if protocol.flip else (False,):
            x = scaled.flip(-1) if flipped else scaled
            logits = MODES[protocol.mode](fn, x, protocol)
            if flipped:
                logits = logits.flip(-1)
            logits = _wide(logits)
            if tuple(logits.shape[-2:]) != size:
                logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
            if refine is not None or protocol.pamr_iterations:
                # the unflipped view: the logits are back in the image's orientation
                guide = F.interpolate(_wide(scaled), size=size, mode="bilinear", align_corners=False)
                guide = guide.to(logits.dtype)
                if refine is not None:
                    logits = refine(guide, logits)
                if protocol.pamr_iterations:
                    logits = pamr(guide, logits, protocol.pamr_iterations, tuple(protocol.pamr_dilations))
            total = logits if total is None else total + logits
            views += 1
    return total / views
