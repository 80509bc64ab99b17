"""Class-name lists, in the order their reference code ships them (index = contiguous class id), read from the
lists shipped as data in class_lists/ (a name per line in the .txt lists; a JSON list of strings in the .json
ones, where one name may hold commas: ``"building, edifice"`` is one class)."""

from __future__ import annotations

import json
from pathlib import Path

LISTS = Path(__file__).with_name("class_lists")  # one name per line, in class-id order


def _shipped(name: str) -> tuple[str, ...]:
    return tuple(line.strip() for line in (LISTS / f"{name}.txt").read_text(encoding="utf-8").splitlines()
                 if line.strip())


def _shipped_json(name: str) -> tuple[str, ...]:
    """A shipped JSON list, names kept exactly as written."""
    return tuple(json.loads((LISTS / f"{name}.json").read_text(encoding="utf-8")))


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

# COCO-Object (GroupViT's cvt_coco_object.py lineage; SCLIP custom_datasets.py COCOObjectDataset):
# "background", then the 80 COCO thing classes in COCO order, spelt as COCO-Stuff-171's first 80 classes
COCO_OBJECT: tuple[str, ...] = ("background", *COCO_STUFF171[:80])
# mmseg/datasets/cityscapes.py, CityscapesDataset.METAINFO["classes"]: the 19 classes in trainId order
# (cityscapesScripts helpers/labels.py; the lineage's cls_city_scapes.txt writes "trafficlight",
# "trafficsign")
CITYSCAPES: tuple[str, ...] = _shipped("cityscapes19")
# CAT-Seg datasets/ade847.json: ADE20K-847's WordNet names in trainId order, one prompt each
ADE847: tuple[str, ...] = _shipped_json("ade847")
# CAT-Seg datasets/pc459.json: Pascal Context-459 in labels.txt order (concatenated forms; "unknown" is a
# class)
PC459: tuple[str, ...] = _shipped_json("pc459")

# cityscapesScripts 0bcc4a7 helpers/labels.py:62-98: labelId -> trainId of the 19 evaluated classes; every
# other labelId (0..33) is 255
CITYSCAPES_TRAIN_IDS: dict[int, int] = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12, 26: 13,
    27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}
CITYSCAPES_NUM_LABEL_IDS = 34  # labelIds PNGs hold 0..33

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
