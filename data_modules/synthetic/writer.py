"""Writing the synthetic world to disk: both splits, in two real on-disk formats, atomically.

The world is written in two real on-disk formats so that the very same readers serve it and the
real datasets:

* COCO captions (``coco/annotations/captions_{train,val}2017.json`` + ``coco/{train,val}2017``),
  five captions per image; each annotation carries an extra ``nouns`` field listing the canonical
  class names the caption mentions (PACL uses them as extra prompt texts).
* ADE20K (``ADEChallengeData2016/images/...`` + ``annotations/...``), 8-bit masks where class index
  ``i`` is stored as ``i + 1`` and ``0`` means unlabeled.

Generation is deterministic (byte-identical files for the same arguments, whatever the order in
which images are drawn) because every image gets its own RNG seeded by ``(seed, split, index)``.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from data_modules.synthetic.captions import captions
from data_modules.synthetic.render import CLASS_NAMES, render_image

__all__ = ["FORMAT", "VERSION", "generate", "is_complete"]

FORMAT = "lseg_pacl-synthetic"
VERSION = 2

_SPLITS = (("train", 0, "train2017", "training"), ("val", 1, "val2017", "validation"))


def _manifest(seed: int, n_train: int, n_val: int, size: int) -> dict:
    return {
        "format": FORMAT,
        "version": VERSION,
        "seed": int(seed),
        "n_train": int(n_train),
        "n_val": int(n_val),
        "size": int(size),
        "classes": list(CLASS_NAMES),
    }


def _dump_json(obj: object) -> bytes:
    return (json.dumps(obj, indent=2, ensure_ascii=True) + "\n").encode("utf-8")


def _encode(arr: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    if fmt == "JPEG":
        Image.fromarray(arr, "RGB").save(buf, format="JPEG", quality=95, subsampling=0, optimize=False)
    else:
        Image.fromarray(arr, "L").save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def _dirs(root: Path) -> dict[str, tuple[Path, Path, Path]]:
    """Per split: (coco image dir, ADE image dir, ADE annotation dir)."""
    return {
        split: (
            root / "coco" / coco_name,
            root / "ADEChallengeData2016" / "images" / ade_name,
            root / "ADEChallengeData2016" / "annotations" / ade_name,
        )
        for split, _, coco_name, ade_name in _SPLITS
    }


def _check_args(seed: int, n_train: int, n_val: int, size: int) -> None:
    if n_train < 0 or n_val < 0:
        raise ValueError(f"n_train and n_val must be >= 0, got {n_train}, {n_val}")
    if size < 16:
        raise ValueError(f"size must be >= 16, got {size}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0 (it seeds numpy's SeedSequence), got {seed}")


def is_complete(out: str | Path, seed: int, n_train: int, n_val: int, size: int) -> bool:
    """True if ``out`` holds a finished world generated with exactly these parameters.

    The manifest is written last and the directory is renamed into place atomically, so a matching
    manifest plus the expected file counts means the world can be reused as is.
    """
    root = Path(out)
    try:
        manifest = json.loads((root / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    if manifest != _manifest(seed, n_train, n_val, size):
        return False
    required = [
        root / "classnames.json",
        root / "coco" / "annotations" / "captions_train2017.json",
        root / "coco" / "annotations" / "captions_val2017.json",
    ]
    if not all(p.is_file() for p in required):
        return False
    want = {"train": n_train, "val": n_val}
    for split, dirs in _dirs(root).items():
        for d in dirs:
            try:
                if len(os.listdir(d)) != want[split]:
                    return False
            except OSError:
                return False
    return True


def _write_split(root: Path, split: str, split_id: int, seed: int, n: int, first_id: int, size: int) -> None:
    coco_dir, ade_img_dir, ade_ann_dir = _dirs(root)[split]
    for d in (coco_dir, ade_img_dir, ade_ann_dir):
        d.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for index in range(n):
        rng = np.random.default_rng([seed, split_id, index])
        rgb, mask, visible = render_image(rng, size)
        caps = captions(rng, visible)
        image_id = first_id + index
        stem = f"{image_id:012d}"
        jpg = _encode(rgb, "JPEG")
        (coco_dir / f"{stem}.jpg").write_bytes(jpg)
        (ade_img_dir / f"{stem}.jpg").write_bytes(jpg)
        (ade_ann_dir / f"{stem}.png").write_bytes(_encode(mask, "PNG"))
        images.append({"id": image_id, "file_name": f"{stem}.jpg", "width": size, "height": size})
        for k, (text, nouns) in enumerate(caps):
            annotations.append(
                {"id": (image_id - 1) * 5 + k + 1, "image_id": image_id, "caption": text, "nouns": nouns}
            )
    coco_name = "captions_train2017.json" if split == "train" else "captions_val2017.json"
    doc = {
        "info": {
            "description": f"{FORMAT} v{VERSION} ({split}), procedurally drawn",
            "version": str(VERSION),
            "year": 2017,
            "seed": int(seed),
        },
        "licenses": [],
        "images": images,
        "annotations": annotations,
    }
    ann_dir = root / "coco" / "annotations"
    ann_dir.mkdir(parents=True, exist_ok=True)
    (ann_dir / coco_name).write_bytes(_dump_json(doc))


def generate(out: str | Path, seed: int = 0, n_train: int = 4000, n_val: int = 200, size: int = 64) -> Path:
    """Write the synthetic world into ``out`` (COCO captions + ADE20K layouts) and return ``out``.

    * A complete world with the same parameters already at ``out`` is reused untouched.
    * A non-empty ``out`` that is not such a world raises ``FileExistsError``: user files are never
      overwritten or deleted.
    * Everything is written to a temporary sibling directory that is renamed into place at the end,
      so an interrupted run never leaves a half-written world at ``out``.
    """
    _check_args(seed, n_train, n_val, size)
    root = Path(out)
    if is_complete(root, seed, n_train, n_val, size):
        return root
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise FileExistsError(
            f"{root} exists and is not a synthetic world generated with seed={seed}, n_train={n_train}, "
            f"n_val={n_val}, size={size}; refusing to overwrite it (choose another directory or remove "
            f"it yourself)"
        )
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    try:
        os.chmod(tmp, 0o755)
        (tmp / "classnames.json").write_bytes(_dump_json(list(CLASS_NAMES)))
        first_id = 1
        for split, split_id, _, _ in _SPLITS:
            n = n_train if split == "train" else n_val
            _write_split(tmp, split, split_id, seed, n, first_id, size)
            first_id += n
        (tmp / "manifest.json").write_bytes(_dump_json(_manifest(seed, n_train, n_val, size)))
        if root.is_dir() and not any(root.iterdir()):
            root.rmdir()  # an empty directory holds nothing of the user's; replace it
        try:
            os.rename(tmp, root)
        except OSError:
            if is_complete(root, seed, n_train, n_val, size):  # a concurrent run finished first
                shutil.rmtree(tmp, ignore_errors=True)
                return root
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root
