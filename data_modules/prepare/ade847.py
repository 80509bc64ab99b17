"""``lseg-pacl data prepare ade847 src=ADE20K_2021_17_01 [root=DIR] [split=validation]``: ADE20K-847 in the
detectron2 layout, from the original ADE20K_2021_17_01 release, as CAT-Seg's
``datasets/prepare_ade20k_full.py`` (6d3a188) writes it.

- The samples: ``index_ade20k.pkl``'s ``folder`` and ``filename`` lists (L948-966); a file is validation when
  the second ``_``-separated part of its name is ``val`` (``ADE_val_*``, 2,000 images), training otherwise
  (L967). ``folder`` is relative to the folder holding ADE20K_2021_17_01 (L971). The pickle is read by a
  restricted unpickler (safe_pickle.py): numpy arrays and plain data only.
- The class of a pixel: ``*_seg.png`` beside the image, R / 10 * 256 + G (L932-941); ADE object id ->
  trainId 0..846 by the 847-entry table (L13-929, shipped as ade847_ids.json); every other id 65535
  (L994-998).
- Images whose short side exceeds 512 are resized to short side 512, the long side ``round``ed (L977-989):
  the image with OpenCV's bilinear and the label with OpenCV's nearest, as the script does (so the labels
  match bit for bit).
- Written (L1000-1010): ``images_detectron2/<split>/<name>.jpg`` (PIL's JPEG defaults) and
  ``annotations_detectron2/<split>/<name>.tif`` (uint16 TIFF).

Differences, for inputs the release does not hold: an image that is not RGB or greyscale is converted to RGB
(the script would fail to write it); an image whose ``_seg.png`` differs in size is a bad input.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from data_modules.prepare.common import InputError, Summary, put_image, source_dir, standard_out
from data_modules.prepare.safe_pickle import RefusedGlobal, load_data_pickle

NAME = "ade847"
FOLDER = "ADE20K_2021_17_01"
OPTIONS = {"src": str, "root": str, "split": str}
REQUIRED = ("src",)
USAGE = "ade847 src=ADE20K_2021_17_01 [root=DIR] [split=validation]"
SPLITS = ("validation", "training")
IDS_FILE = Path(__file__).with_name("ade847_ids.json")
IGNORE = 65535
MAX_SIZE = 512  # prepare_ade20k_full.py:978
SOURCE_LAYOUT = (
    f"{FOLDER}/  (the original release)\n  index_ade20k.pkl\n"
    "  images/ADE/validation/<scene>/ADE_val_<n>.jpg\n  images/ADE/validation/<scene>/ADE_val_<n>_seg.png"
)
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


def ade_ids() -> list[int]:
    """ade_ids[trainId]: the ADE20K object id of each of the 847 classes (prepare_ade20k_full.py:13-929)."""
    return json.loads(IDS_FILE.read_text(encoding="utf-8"))["ade_ids"]


def trainid_lut() -> np.ndarray:
    """ADE object id -> trainId (uint16), 65535 for every id outside the table."""
    lut = np.full(1 << 16, IGNORE, dtype=np.uint16)
    lut[ade_ids()] = np.arange(847, dtype=np.uint16)
    return lut


def class_mask(seg: np.ndarray) -> np.ndarray:
    """The object class of each pixel from a ``*_seg.png`` array: R / 10 * 256 + G (L937-939)."""
    r, g = seg[:, :, 0], seg[:, :, 1]
    return (r / 10).astype(np.int32) * 256 + g.astype(np.int32)


def target_size(h: int, w: int, max_size: int = MAX_SIZE) -> tuple[int, int] | None:
    """(h, w) after the script's resize, or None when the short side is at most ``max_size`` (L977-985)."""
    if w >= h > max_size:
        return max_size, round(w / float(h) * max_size)
    if h >= w > max_size:
        return round(h / float(w) * max_size), max_size
    return None


def split_of(file_name: str) -> str:
    parts = file_name.split("_")
    return "validation" if len(parts) > 1 and parts[1] == "val" else "training"


def read_index(path: Path) -> tuple[list[str], list[str]]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found. Expected layout:\n{SOURCE_LAYOUT}")
    try:
        index = load_data_pickle(path)
    except RefusedGlobal as exc:
        raise InputError(str(exc)) from None
    except Exception as exc:  # a damaged file: whatever numpy or pickle raise, one message
        raise InputError(f"cannot read {path}: {type(exc).__name__}: {exc}") from None
    if not isinstance(index, dict) or "folder" not in index or "filename" not in index:
        raise InputError(f"{path} is not ADE20K's index: expected a dict with 'folder' and 'filename' lists")
    folders, names = list(index["folder"]), list(index["filename"])
    if len(folders) != len(names):
        raise InputError(f"{path}: 'folder' has {len(folders)} entries, 'filename' {len(names)}")
    return [str(f) for f in folders], [str(n) for n in names]


def _image_path(src: Path, folder: str, file_name: str) -> Path:
    """The script's ``<folder holding ADE20K_2021_17_01>/<folder>/<name>``; ``<src>/<folder>/<name>`` when the
    index's folders are relative to the release itself."""
    first = src.parent / folder / file_name
    second = src / folder / file_name
    return second if not first.is_file() and second.is_file() else first


def _read_image(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        img.load()
        if img.mode not in ("RGB", "L"):
            img = img.convert("RGB")
        return np.asarray(img)


def _read_seg(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        img.load()
        seg = np.asarray(img)
    if seg.ndim != 3 or seg.shape[2] < 2 or seg.dtype != np.uint8:
        raise ValueError(f"expected an 8-bit RGB _seg.png, got shape {seg.shape} {seg.dtype}")
    return seg


def convert(img: np.ndarray, seg: np.ndarray, lut: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(image, uint16 trainId label) as the script writes them."""
    lab = class_mask(seg)
    size = target_size(*img.shape[:2])
    if size is not None:
        h_new, w_new = size
        img = cv2.resize(img, (w_new, h_new), interpolation=cv2.INTER_LINEAR)
        lab = cv2.resize(lab, (w_new, h_new), interpolation=cv2.INTER_NEAREST)
    return img, lut[lab]


def run(src: str, root: str | None = None, split: str = "validation") -> dict:
    if split not in SPLITS:
        raise ValueError(f"split={split}: ADE20K_2021_17_01 has {' and '.join(SPLITS)}")
    source = source_dir(src, FOLDER)
    folders, names = read_index(source / "index_ade20k.pkl")
    out = standard_out(root, FOLDER) if root else source
    image_dir, label_dir = out / "images_detectron2" / split, out / "annotations_detectron2" / split
    summary = Summary(NAME, str(source), str(out), split)
    lut = trainid_lut()
    for folder, file_name in zip(folders, names, strict=True):
        if split_of(file_name) != split:
            continue
        summary.seen()
        if Path(file_name).name != file_name or not file_name.endswith(".jpg"):
            summary.bad_input(f"{folder}/{file_name}", "bad_name", "expected a plain <name>.jpg")
            continue
        image_path = _image_path(source, folder, file_name)
        seg_path = image_path.with_name(file_name.replace(".jpg", "_seg.png"))
        try:
            img = _read_image(image_path)
        except _DECODE_ERRORS as exc:
            summary.bad_input(image_path, "bad_image" if image_path.is_file() else "missing_file", str(exc))
            continue
        try:
            seg = _read_seg(seg_path)
        except _DECODE_ERRORS as exc:
            summary.bad_input(seg_path, "bad_mask" if seg_path.is_file() else "missing_file", str(exc))
            continue
        if img.shape[:2] != seg.shape[:2]:
            summary.bad_input(image_path, "size_mismatch",
                              f"image {img.shape[0]}x{img.shape[1]}, _seg.png {seg.shape[0]}x{seg.shape[1]}")
            continue
        img, label = convert(img, seg, lut)
        put_image(summary, label_dir / file_name.replace(".jpg", ".tif"), Image.fromarray(label), "TIFF")
        put_image(summary, image_dir / file_name, Image.fromarray(img), "JPEG")
    if summary.inputs == 0:
        raise InputError(f"{source / 'index_ade20k.pkl'} lists no {split} image (ADE_val_* for validation)")
    return summary.as_dict()
