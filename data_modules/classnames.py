"""Class-name lists, in the order MMSegmentation ships them (index = contiguous class id), read from the
lists shipped as data in class_lists/."""

from __future__ import annotations

import json
from pathlib import Path

LISTS = Path(__file__).with_name("class_lists")  # one name per line, in class-id order


def _shipped(name: str) -> tuple[str, ...]:
    return tuple(line.strip() for line in (LISTS / f"{name}.txt").read_text(encoding="utf-8").splitlines()
                 if line.strip())


# mmseg/datasets/ade.py, ADE20KDataset.METAINFO["classes"] (1.x; its "bed " is stored stripped)
ADE20K_150: tuple[str, ...] = _shipped("ade20k_150")
# mmseg/datasets/voc.py, PascalVOCDataset.METAINFO["classes"] (MMSegmentation 1.x)
VOC21: tuple[str, ...] = _shipped("voc21")
VOC20: tuple[str, ...] = VOC21[1:]  # the 20 object classes, without "background"
# mmseg/datasets/pascal_context.py, PascalContextDataset.METAINFO["classes"] (MMSegmentation 1.x)
CONTEXT60: tuple[str, ...] = _shipped("context60")
CONTEXT59: tuple[str, ...] = CONTEXT60[1:]  # PascalContextDataset59: the same without "background"
# mmseg/datasets/coco_stuff.py, COCOStuffDataset.METAINFO["classes"] (MMSegmentation 1.x): 80 things, 91 stuff
COCO_STUFF171: tuple[str, ...] = _shipped("coco_stuff171")

# Raw ids (0..181) of the official stuffthingmaps PNGs that no class uses (absent from clsID_to_trID in
# mmseg tools/dataset_converters/coco_stuff164k.py); raw id k is COCO category id k + 1.
COCO_STUFF_UNUSED_IDS: tuple[int, ...] = (11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90)

# The 171 used raw ids, increasing: COCO_STUFF_RAW_IDS[i] is the raw PNG value of COCO_STUFF171[i]
# (255 = void).
COCO_STUFF_RAW_IDS: tuple[int, ...] = tuple(k for k in range(182) if k not in COCO_STUFF_UNUSED_IDS)


def read_classnames(path: Path) -> tuple[str, ...]:
    """A JSON list of class names (how the synthetic world, and any custom dataset, states its classes)."""
    try:
        names = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read class names from {path}: {exc}") from None
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n.strip() for n in names):
        raise ValueError(f"{path} must hold a non-empty JSON list of class-name strings")
    return tuple(n.strip() for n in names)
