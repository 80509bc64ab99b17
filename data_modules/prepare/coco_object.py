"""``lseg-pacl data prepare coco_object root=DIR [split=val2017]``: COCO-Object masks from the official
COCO-Stuff-164k stuffthingmaps, as the training-free lineage's ``datasets/cvt_coco_object.py`` (GroupViT's;
SCLIP b56bd30 L18-211) writes them.

The conversion (L18-197): a raw value v is COCO category id v + 1. The 171 values of COCO-Stuff's table are
numbered 0..170 in order and shifted by one; every value above 90 (the 91 stuff classes, and 255 = unlabeled)
then becomes 0, so the 80 thing values (all below 90) become 1..80 in COCO order and nothing is ignored.
Output (L205-211): ``annotations/<split>/<stem>_instanceTrainIds.png`` beside the raw
``annotations/<split>/<stem>.png`` (names holding ``TrainIds`` are not inputs, L241-244), a single-channel
PNG.

One difference, for inputs that never occur in the official maps: the script leaves a value it has no entry
for (the 11 unused ids, e.g. 11 = COCO id 12) unchanged, which would read as a thing class; here such a mask
is a bad input, listed and not written.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from data_modules.bad_samples import BadSample
from data_modules.benchmarks import BENCHMARKS, INVALID, LUT_SIZE, dataset_dir, map_labels
from data_modules.classnames import COCO_STUFF_RAW_IDS
from data_modules.images import read_label_png
from data_modules.prepare.common import Summary, put_image

NAME = "coco_object"
OPTIONS = {"root": str, "split": str}
REQUIRED = ("root",)
USAGE = "coco_object root=DIR [split=val2017]"
THINGS_ABOVE = 90  # cvt_coco_object.py:194-197: entries whose raw value k > 90 are set to 0 (background)
OUT_SUFFIX = "_instanceTrainIds.png"


def coco_object_lut() -> np.ndarray:
    """Raw stuffthingmaps value -> COCO-Object class id (0 = background, 1..80 = things); values with no
    entry in the script's table are INVALID (a bad input)."""
    lut = np.full(LUT_SIZE, INVALID, dtype=np.int32)
    for train_id, raw in enumerate(COCO_STUFF_RAW_IDS):  # the table of L18-191, in order
        lut[raw] = 0 if raw > THINGS_ABOVE else train_id + 1
    lut[255] = 0  # 255: 255 in the table, > 90
    return lut


def raw_masks(ann_dir: Path) -> list[Path]:
    """The raw stuffthingmaps PNGs of one split folder (names holding ``TrainIds`` are outputs)."""
    return sorted(p for p in ann_dir.glob("*.png") if "TrainIds" not in p.name and p.is_file())


def output_path(raw: Path) -> Path:
    return raw.with_name(raw.name.split(".")[0] + OUT_SUFFIX)  # the script's basename.split('.')[0]


def run(root: str, split: str = "val2017") -> dict:
    bench = BENCHMARKS[NAME]
    d = dataset_dir(bench, root)
    ann_dir = d / "annotations" / split
    inputs = raw_masks(ann_dir) if ann_dir.is_dir() else []
    if not inputs:
        raise FileNotFoundError(
            f"no raw COCO-Stuff masks in {ann_dir}. Expected layout:\ncoco_stuff164k/\n"
            f"  images/{split}/<stem>.jpg\n  annotations/{split}/<stem>.png  (the official "
            f"stuffthingmaps_trainval2017.zip, ids 0..181, 255 = unlabeled)"
        )
    summary = Summary(NAME, str(ann_dir), str(ann_dir), split)
    lut = coco_object_lut()
    for raw_path in inputs:
        summary.seen()
        try:
            raw = read_label_png(raw_path)
        except BadSample as exc:
            summary.bad_input(raw_path, exc.reason, exc.detail)
            continue
        mapped, bad = map_labels(raw, lut)
        if mapped is None:
            summary.bad_input(raw_path, "label_out_of_range",
                              f"raw ids {bad} have no entry in the conversion")
            continue
        put_image(summary, output_path(raw_path), Image.fromarray(mapped.astype(np.uint8)), "PNG")
    return summary.as_dict()
