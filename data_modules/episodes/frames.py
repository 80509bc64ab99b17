"""One image or mask of an episode, read and resized as the official few-shot loaders do (lang-seg @ bb00b21).

* Image: ``Image.open`` (stored pixels: EXIF orientation is not applied), RGB, then torchvision's
  ``Resize((size, size))`` on a PIL image, which is PIL's own bilinear ``resize`` (the aspect ratio is not
  kept), ``ToTensor`` (/255) and ``Normalize(mean, std)`` (data/dataset.py:31-33). PIL's call is made
  directly, so torchvision is not needed; the tests compare with torchvision when it is installed.
* Mask: the raw ids (palette indices, never luminance; FSS: ``convert('L')`` then >= 128) resized to
  (size, size) by ``F.interpolate(mode='nearest')`` on a float tensor (pascal.py:39, coco.py:40, fss.py:39).
* Target: fg = 1, bg = 0, 255 = ignore where the protocol has it (``binary_target``).

Failures are ``BadSample`` (missing or unreadable file) naming the file, as data_modules/images.py raises
them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from data_modules.bad_samples import BadSample
from data_modules.benchmarks import IGNORE_INDEX
from data_modules.images import _DECODE_ERRORS, decode_rgb, read_label_png

__all__ = ["binary_target", "load_image", "read_fss_mask", "read_index_mask", "resize_mask"]


def load_image(path: Path, size: int, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """[3, size, size] float32: PIL bilinear resize of the stored RGB pixels, /255, (x - mean) / std."""
    stored, _orientation = decode_rgb(path)  # the official Image.open ignores EXIF orientation too
    resized = stored.resize((size, size), Image.Resampling.BILINEAR)
    x = torch.from_numpy(np.array(resized, dtype=np.uint8)).permute(2, 0, 1).contiguous()
    x = x.to(torch.float32).div(255)
    m = torch.as_tensor(mean, dtype=torch.float32).view(-1, 1, 1)
    s = torch.as_tensor(std, dtype=torch.float32).view(-1, 1, 1)
    return x.sub_(m).div_(s)


def read_index_mask(path: Path) -> np.ndarray:
    """Raw ids of a single-channel or palette PNG (``np.array(Image.open(png))``, pascal.py:92,
    coco.py:83)."""
    return read_label_png(path)


def read_fss_mask(path: Path) -> np.ndarray:
    """FSS-1000: the PNG as luminance, 1 where >= 128 else 0 (fss.py:83-87)."""
    if not path.is_file():
        raise BadSample("missing_file", path)
    try:
        with Image.open(path) as img:
            img.load()
            lum = np.asarray(img.convert("L"))
    except _DECODE_ERRORS as exc:
        raise BadSample("bad_mask", path, str(exc)) from None
    return (lum >= 128).astype(np.int64)


def resize_mask(raw: np.ndarray, size: int) -> torch.Tensor:
    """[size, size] float: nearest-neighbour as ``F.interpolate(mask[None, None].float(), (size, size))``."""
    m = torch.from_numpy(np.ascontiguousarray(raw)).float()[None, None]
    return F.interpolate(m, (size, size), mode="nearest")[0, 0]


def binary_target(
    mask: torch.Tensor, fg: int, ignore: int | None = None, keep_ignore: bool = True
) -> torch.Tensor:
    """Long [H, W]: 1 where ``mask == fg``, else 0; pixels equal to ``ignore`` become 255 when ``keep_ignore``
    (the test protocols), else 0 (as the official training loss sees them: background)."""
    out = (mask == fg).long()
    if ignore is not None and keep_ignore:
        out[mask == ignore] = IGNORE_INDEX
    return out
