"""``lseg-pacl data prepare pc459 src=VOCdevkit/VOC2010 [root=DIR]``: Pascal Context-459 labels in the
detectron2 layout, as CAT-Seg's ``datasets/prepare_pascal_context_459.py`` (6d3a188) writes them.

- The samples: the 5,104 ids of CAT-Seg's ``datasets/pascalcontext_val.txt`` (shipped here), each read from
  ``trainval/<id>.mat`` (Pascal Context's trainval.tar.gz), variable ``LabelMap`` (L13-15, L40-45), with
  scipy.io.loadmat (which reads arrays and never runs code).
- The label: LabelMap - 1 (L16), so 1..459 -> 0..458, and 0 (unlabeled) -> 65535, the wrap-around of the
  script's uint16 subtraction and the ignore index the benchmark is scored with.
- Written: ``annotations_detectron2/pc459_val/<id>.tif`` (uint16 TIFF, L19, L37-43). With ``root=`` another
  folder, the listed ``JPEGImages/<id>.jpg`` are copied there too, so that it reads as the benchmark.

Differences: the script skips an id whose .mat is missing without a word; here it is a bad input, listed. A
LabelMap value outside 0..459 is a bad input too (the script's assert cannot fire on unsigned values), as is
an id whose image is missing (its label is not written: every .tif is a sample to the reader).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

from data_modules.prepare.common import Summary, put, put_image, source_dir, standard_out

NAME = "pc459"
FOLDER = "VOCdevkit/VOC2010"
OPTIONS = {"src": str, "root": str, "split": str}
REQUIRED = ("src",)
USAGE = "pc459 src=VOCdevkit/VOC2010 [root=DIR]"
VAL_IDS = Path(__file__).with_name("pascalcontext_val.txt")  # CAT-Seg 6d3a188 datasets/pascalcontext_val.txt
NUM_CLASSES = 459
IGNORE = 65535
SOURCE_LAYOUT = (
    "VOCdevkit/VOC2010/\n  JPEGImages/<id>.jpg\n"
    "  trainval/<id>.mat  (Pascal Context's trainval.tar.gz: LabelMap, 0 = unlabeled, 1..459)"
)


def val_ids() -> list[str]:
    return [s for s in (line.strip() for line in VAL_IDS.read_text().splitlines()) if s]


def to_train_ids(label_map: np.ndarray) -> np.ndarray:
    """LabelMap (0..459) -> uint16 0..458, 0 -> 65535; ValueError naming values outside 0..459."""
    arr = np.asarray(label_map)
    if arr.ndim != 2 or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ValueError(f"LabelMap must be a 2-D numeric array, got {arr.dtype} {arr.shape}")
    bad = (arr < 0) | (arr > NUM_CLASSES) | (arr != np.floor(arr))
    if bad.any():
        raise ValueError(f"LabelMap values {np.unique(arr[bad])[:8].tolist()} outside 0..{NUM_CLASSES}")
    values = arr.astype(np.int64)
    return np.where(values == 0, IGNORE, values - 1).astype(np.uint16)


def read_label_map(path: Path) -> np.ndarray:
    mat = scipy.io.loadmat(str(path), variable_names=["LabelMap"])
    if "LabelMap" not in mat:
        raise KeyError("no LabelMap variable")
    return mat["LabelMap"]


def run(src: str, root: str | None = None, split: str = "val") -> dict:
    if split != "val":
        raise ValueError(f"split={split}: pc459 is prepared for val only (CAT-Seg's pascalcontext_val.txt)")
    source = source_dir(src, FOLDER)
    mats = source / "trainval"
    if not mats.is_dir():
        raise FileNotFoundError(f"{mats} not found. Expected layout:\n{SOURCE_LAYOUT}")
    out = standard_out(root, FOLDER) if root else source
    copy_images = out.resolve() != source.resolve()
    label_dir = out / "annotations_detectron2" / f"pc459_{split}"
    summary = Summary(NAME, str(source), str(out), split)
    for file_id in val_ids():
        summary.seen()
        mat, image = mats / f"{file_id}.mat", source / "JPEGImages" / f"{file_id}.jpg"
        if not mat.is_file():
            summary.bad_input(mat, "missing_file")
            continue
        if not image.is_file():
            summary.bad_input(image, "missing_file")
            continue
        try:
            label = to_train_ids(read_label_map(mat))
        except Exception as exc:  # scipy.io raises many kinds for a damaged file: one listed bad input each
            summary.bad_input(mat, "bad_mask", f"{type(exc).__name__}: {exc}")
            continue
        put_image(summary, label_dir / f"{file_id}.tif", Image.fromarray(label), "TIFF")
        if copy_images:
            put(summary, out / "JPEGImages" / f"{file_id}.jpg", image.read_bytes(), decoded=False)
    return summary.as_dict()
