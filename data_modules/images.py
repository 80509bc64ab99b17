"""Reading images and label masks from disk into numpy arrays, with errors that name the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps


def read_rgb(path: Path) -> np.ndarray:
    """An RGB uint8 array, EXIF orientation applied (so it matches how viewers and masks see the image)."""
    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img)
            return np.asarray(img.convert("RGB"))
    except (OSError, ValueError, SyntaxError) as exc:
        raise ValueError(f"cannot read image {path}: {exc}") from None


def read_label_png(path: Path) -> np.ndarray:
    """Raw label ids as int64. Palette PNGs give their palette indices (never luminance); 16-bit stays 16-bit."""
    try:
        with Image.open(path) as img:
            if img.mode in ("P", "L", "I", "I;16", "I;16B", "I;16L"):
                arr = np.asarray(img)
            else:
                raise ValueError(f"label PNG has mode {img.mode}; expected a single-channel or palette PNG")
    except (OSError, SyntaxError) as exc:
        raise ValueError(f"cannot read label {path}: {exc}") from None
    return arr.astype(np.int64)
