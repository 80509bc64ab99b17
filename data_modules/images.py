"""Reading images and label masks into numpy arrays. Every failure is a ``BadSample`` naming the file and why.

Truncated files open fine in PIL and fail on load, so everything is fully loaded here. Palette masks give
their palette indices (never luminance); 16-bit masks keep their values (no uint8 wrap-around).
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from data_modules.bad_samples import BadSample

ORIENTATION_TAG = 0x0112
LABEL_MODES = ("P", "L", "I", "I;16", "I;16B", "I;16L")
T = Image.Transpose
_EXIF_TRANSPOSE = {
    2: T.FLIP_LEFT_RIGHT,
    3: T.ROTATE_180,
    4: T.FLIP_TOP_BOTTOM,
    5: T.TRANSPOSE,
    6: T.ROTATE_270,
    7: T.TRANSVERSE,
    8: T.ROTATE_90,
}  # the EXIF orientation tag's meaning
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError, EOFError)


def _open(source: Path | bytes) -> Image.Image:
    return Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)


Reduction = Callable[
    [int, int], float
]  # (stored width, height) -> the largest linear shrink that loses nothing


def decode_rgb(
    source: Path | bytes, where: object = None, reduction: Reduction | None = None
) -> tuple[Image.Image, int]:
    """(fully loaded RGB image with its pixels as stored, EXIF orientation 1..8; 1 when absent).

    ``reduction``: a JPEG that may shrink by 2x or more is decoded at 1/2, 1/4 or 1/8 of its size (libjpeg's
    DCT scaling, much cheaper than decoding in full), never below the size the rule allows."""
    where = where if where is not None else source
    if isinstance(source, Path) and not source.is_file():
        raise BadSample("missing_file", where)
    try:
        with _open(source) as img:
            orientation = int(img.getexif().get(ORIENTATION_TAG, 1) or 1)
            factor = reduction(*img.size) if reduction is not None and img.format == "JPEG" else 1.0
            if factor >= 2:
                img.draft("RGB", (math.ceil(img.size[0] / factor), math.ceil(img.size[1] / factor)))
            img.load()
            rgb = img.convert("RGB")
    except _DECODE_ERRORS as exc:
        raise BadSample("bad_image", where, str(exc)) from None
    return rgb, orientation if 1 <= orientation <= 8 else 1


def as_viewed(img: Image.Image, orientation: int) -> Image.Image:
    """The image as viewers show it: its EXIF orientation applied."""
    return img.transpose(_EXIF_TRANSPOSE[orientation]) if orientation in _EXIF_TRANSPOSE else img


def read_rgb(source: Path | bytes, where: object = None, reduction: Reduction | None = None) -> np.ndarray:
    """An RGB uint8 array with EXIF orientation applied (how caption writers saw the picture)."""
    img, orientation = decode_rgb(source, where, reduction)
    return np.asarray(as_viewed(img, orientation))


def read_label_png(path: Path) -> np.ndarray:
    """Raw label ids as int64 from a single-channel, palette or 16-bit PNG, or a single-channel (8- or 16-bit)
    TIFF such as CAT-Seg's ``annotations_detectron2/**/*.tif`` (PIL reads those as mode "I;16")."""
    if not path.is_file():
        raise BadSample("missing_file", path)
    try:
        with Image.open(path) as img:
            if img.mode not in LABEL_MODES:
                raise BadSample(
                    "bad_mask", path, f"mode {img.mode}; expected a single-channel, palette or 16-bit mask"
                )
            img.load()
            arr = np.asarray(img)
    except _DECODE_ERRORS as exc:
        raise BadSample("bad_mask", path, str(exc)) from None
    return arr.astype(np.int64)
