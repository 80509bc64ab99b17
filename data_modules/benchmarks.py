"""The segmentation benchmarks: where each lives on disk, how its files pair up, and how raw mask ids map to
contiguous class ids. Conventions follow MMSegmentation, or CAT-Seg's detectron2 layouts for the two large
vocabularies (docs/datasets.md#benchmarks-and-labels).

The ignore index is 255 everywhere except ADE20K-847 and Pascal Context-459, whose 16-bit TIFF labels use
65535 (class 255 is a real class there). Masks come out as uint8 where every id fits, else uint16.

Each mapping is a lookup table over every possible raw id (16-bit masks included); -1 marks ids the dataset
never uses, which make the sample bad ("label_out_of_range") rather than silently wrong.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data_modules.classnames import (
    ADE20K_150,
    ADE847,
    CITYSCAPES,
    CITYSCAPES_NUM_LABEL_IDS,
    CITYSCAPES_TRAIN_IDS,
    COCO_OBJECT,
    COCO_STUFF171,
    COCO_STUFF_RAW_IDS,
    CONTEXT59,
    CONTEXT60,
    PC459,
    VOC20,
    VOC21,
    read_classnames,
)

IGNORE_INDEX = 255
# a dataset's validation split name -> its training split's, in the same naming scheme
TRAINING_SPLIT_OF = {"validation": "training", "val2017": "train2017", "val": "train"}
IGNORE_INDEX_16 = 65535  # the ignore index of the 16-bit TIFF benchmarks (CAT-Seg: ade847, pc459)
LUT_SIZE = 1 << 16
INVALID = -1


def shifted_lut(num_classes: int, zero_is_ignore: bool, ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """Raw ids 0..num_classes (zero_is_ignore: 0 -> ignore, k -> k-1) or 0..num_classes-1 kept; the ignore
    index stays."""
    lut = np.full(LUT_SIZE, INVALID, dtype=np.int32)
    if zero_is_ignore:
        lut[0] = ignore_index
        lut[1 : num_classes + 1] = np.arange(num_classes)
    else:
        lut[:num_classes] = np.arange(num_classes)
    lut[ignore_index] = ignore_index
    return lut


def coco_stuff_raw_lut() -> np.ndarray:
    """Official stuffthingmaps ids 0..181: the 171 used ids in order -> 0..170; the 11 unused ids -> 255, as
    MMSegmentation's converter does; 255 (unlabeled) stays."""
    lut = np.full(LUT_SIZE, INVALID, dtype=np.int32)
    lut[:182] = IGNORE_INDEX
    lut[list(COCO_STUFF_RAW_IDS)] = np.arange(len(COCO_STUFF_RAW_IDS))
    lut[IGNORE_INDEX] = IGNORE_INDEX
    return lut


def cityscapes_label_id_lut() -> np.ndarray:
    """``*_gtFine_labelIds.png`` (0..33) -> the 19 trainIds by cityscapesScripts' table; other labelIds ->
    255."""
    lut = np.full(LUT_SIZE, INVALID, dtype=np.int32)
    lut[:CITYSCAPES_NUM_LABEL_IDS] = IGNORE_INDEX
    for label_id, train_id in CITYSCAPES_TRAIN_IDS.items():
        lut[label_id] = train_id
    return lut


@dataclass(frozen=True)
class Pair:
    image: Path
    mask: Path
    converted: bool = False  # the mask already holds contiguous class ids (e.g. <stem>_labelTrainIds.png)


@dataclass(frozen=True)
class MaskName:
    """How a mask file is named from its sample's stem, and whether it holds contiguous ids already."""

    suffix: str
    converted: bool = False


PNG_MASK = (MaskName(".png"),)


@dataclass(frozen=True)
class Benchmark:
    """One benchmark's on-disk convention.

    ``listing``: "folders" (every ``image_glob`` match under ``image_dir``, subfolders kept), "split_file"
    (ids listed in ``split_file``) or "masks" (every mask under ``mask_dir``). A sample's stem is its image
    path relative to ``image_dir`` without ``image_suffix``; its mask is ``mask_dir/<stem><suffix>`` for the
    first of ``masks`` that exists (the last one when none does, so a missing file is named). ``prepared``: a
    glob of ``mask_dir`` that must match at least once (masks written by ``prepare``, which ``layout``
    names).
    """

    name: str
    folder: str  # the dataset's standard folder under a data root
    classes: tuple[str, ...] | None  # None: the dataset states them in classnames.json beside its folder
    default_split: str
    listing: str
    image_dir: str
    mask_dir: str
    split_file: str = ""
    zero_is_ignore: bool = True
    layout: str = ""
    background_index: int | None = None  # the class that means "none of the others" (VOC-21, Context-60)
    ignore_index: int = IGNORE_INDEX
    image_suffix: str = ".jpg"
    image_glob: str = "*.jpg"
    masks: tuple[MaskName, ...] = PNG_MASK
    raw_lut: Callable[[], np.ndarray] | None = None  # raw ids of unconverted masks, when not a plain shift
    prepared: str = ""

    def split_name(self, split: str | None) -> str:
        """The split as this dataset names it on disk: ``val`` (or none) is its validation split, ``train``
        its training split (ADE20K's ``validation`` / ``training``, COCO's ``val2017`` / ``train2017``); any
        other name is taken as it is."""
        if split in (None, "", "val"):
            return self.default_split
        if split == "train":
            return TRAINING_SPLIT_OF.get(self.default_split, "train")
        return split

    def class_names(self, dataset_dir: Path | None = None) -> tuple[str, ...]:
        if self.classes is not None:
            return self.classes
        if dataset_dir is None:
            raise ValueError(f"{self.name} states its classes in <root>/classnames.json: pass root=DIR")
        return read_classnames(Path(dataset_dir).parent / "classnames.json")

    def lut(self, num_classes: int, converted: bool = False) -> np.ndarray:
        if self.raw_lut is not None and not converted:
            return self.raw_lut()
        return shifted_lut(num_classes, self.zero_is_ignore and not converted, self.ignore_index)

    def _pair(self, images: Path, masks: Path, stem: str) -> Pair:
        for name in self.masks:
            mask = masks / f"{stem}{name.suffix}"
            if mask.is_file():
                return Pair(images / f"{stem}{self.image_suffix}", mask, name.converted)
        last = self.masks[-1]
        return Pair(images / f"{stem}{self.image_suffix}", masks / f"{stem}{last.suffix}", last.converted)

    def pairs(self, dataset_dir: Path, split: str) -> list[Pair]:
        """Every listed sample (files may be missing: loading counts those), in a fixed order."""
        d = Path(dataset_dir)
        images = d / self.image_dir.format(split=split)
        masks = d / self.mask_dir.format(split=split)
        if self.listing == "split_file":
            lines = (d / self.split_file.format(split=split)).read_text().splitlines()
            stems = [s for s in (line.strip() for line in lines) if s]
        elif self.listing == "masks":
            suffix = self.masks[0].suffix
            stems = sorted(p.name[: -len(suffix)] for p in masks.glob(f"*{suffix}") if p.is_file())
        else:
            cut = len(self.image_suffix)
            stems = sorted(p.relative_to(images).as_posix()[:-cut] for p in images.glob(self.image_glob))
        return [self._pair(images, masks, stem) for stem in stems]

    def missing(self, dataset_dir: Path, split: str) -> str | None:
        """Why this folder is not a readable copy of the dataset (None when it is)."""
        d = Path(dataset_dir)
        mask_dir = d / self.mask_dir.format(split=split)
        need = [d / self.image_dir.format(split=split), mask_dir]
        if self.listing == "split_file":
            need.append(d / self.split_file.format(split=split))
        absent = [p for p in need if not p.exists()]
        if absent:
            return f"{', '.join(str(p) for p in absent)} not found"
        if self.prepared and next(mask_dir.glob(self.prepared), None) is None:
            return f"no {self.prepared} in {mask_dir}"
        if self.classes is None and not (d.parent / "classnames.json").is_file():
            return f"{d.parent / 'classnames.json'} not found"
        return None

    def expected_layout(self, split: str) -> str:
        return self.layout.format(split=split)


def _ade_layout(folder: str) -> str:
    return (
        f"{folder}/\n  images/{{split}}/<stem>.jpg\n  annotations/{{split}}/<stem>.png  "
        f"(single-channel: 0 = unlabeled, k = class k)"
    )


def _split_file_set(folder: str, masks: str, sets: str, values: str) -> dict:
    """The Benchmark fields of a VOC-style set: JPEGImages/<id>.jpg, <masks>/<id>.png, <sets>/<split>.txt."""
    layout = (f"{folder}/\n  JPEGImages/<id>.jpg\n  {masks}/<id>.png  ({values})\n  {sets}/{{split}}.txt  "
              f"(one <id> per line)")
    return dict(folder=folder, default_split="val", listing="split_file", image_dir="JPEGImages",
                mask_dir=masks, split_file=f"{sets}/{{split}}.txt", layout=layout)


_VOC = _split_file_set("VOCdevkit/VOC2012", "SegmentationClass", "ImageSets/Segmentation",
                       "palette PNG: 0 = background, 1..20, 255 = boundary")
_CONTEXT = _split_file_set("VOCdevkit/VOC2010", "SegmentationClassContext", "ImageSets/SegmentationContext",
                           "converted PNG: 0 = background, 1..59")
_FOLDERS = dict(listing="folders", image_dir="images/{split}", mask_dir="annotations/{split}")

BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark(
            "ade20k",
            "ADEChallengeData2016",
            ADE20K_150,
            "validation",
            **_FOLDERS,
            layout=_ade_layout("ADEChallengeData2016"),
        ),
        Benchmark("voc20", classes=VOC20, zero_is_ignore=True, **_VOC),
        Benchmark("voc21", classes=VOC21, zero_is_ignore=False, background_index=0, **_VOC),
        Benchmark("context59", classes=CONTEXT59, zero_is_ignore=True, **_CONTEXT),
        Benchmark("context60", classes=CONTEXT60, zero_is_ignore=False, background_index=0, **_CONTEXT),
        Benchmark(
            "coco_stuff171",
            "coco_stuff164k",
            COCO_STUFF171,
            "val2017",
            **_FOLDERS,
            masks=(MaskName("_labelTrainIds.png", converted=True), MaskName(".png")),
            raw_lut=coco_stuff_raw_lut,
            layout="coco_stuff164k/\n  images/{split}/<stem>.jpg\n  annotations/{split}/<stem>.png  "
            "(official stuffthingmaps, ids 0..181, 255 = unlabeled)\n  or annotations/{split}/"
            "<stem>_labelTrainIds.png  (MMSegmentation's converted masks, 0..170)",
        ),
        Benchmark(
            "coco_object",
            "coco_stuff164k",
            COCO_OBJECT,
            "val2017",
            **_FOLDERS,
            zero_is_ignore=False,
            background_index=0,
            masks=(MaskName("_instanceTrainIds.png", converted=True),),
            prepared="*_instanceTrainIds.png",
            layout="coco_stuff164k/\n  images/{split}/<stem>.jpg\n"
            "  annotations/{split}/<stem>_instanceTrainIds.png  (0 = background, 1..80 = the COCO things; "
            "no ignore pixels)\n"
            "written from the official stuffthingmaps annotations/{split}/<stem>.png by:\n"
            "  lseg-pacl data prepare coco_object root=DIR split={split}",
        ),
        Benchmark(
            "cityscapes",
            "cityscapes",
            CITYSCAPES,
            "val",
            listing="folders",
            image_dir="leftImg8bit/{split}",
            mask_dir="gtFine/{split}",
            zero_is_ignore=False,
            image_suffix="_leftImg8bit.png",
            image_glob="*/*_leftImg8bit.png",
            masks=(MaskName("_gtFine_labelTrainIds.png", converted=True), MaskName("_gtFine_labelIds.png")),
            raw_lut=cityscapes_label_id_lut,
            layout="cityscapes/\n  leftImg8bit/{split}/<city>/<stem>_leftImg8bit.png\n"
            "  gtFine/{split}/<city>/<stem>_gtFine_labelTrainIds.png  (trainIds 0..18, 255 = ignore)\n"
            "  or gtFine/{split}/<city>/<stem>_gtFine_labelIds.png  (labelIds 0..33, mapped by "
            "cityscapesScripts' table)",
        ),
        Benchmark(
            "ade847",
            "ADE20K_2021_17_01",
            ADE847,
            "validation",
            listing="folders",
            image_dir="images_detectron2/{split}",
            mask_dir="annotations_detectron2/{split}",
            zero_is_ignore=False,
            ignore_index=IGNORE_INDEX_16,
            masks=(MaskName(".tif", converted=True),),
            prepared="*.tif",
            layout="ADE20K_2021_17_01/\n  images_detectron2/{split}/<stem>.jpg\n"
            "  annotations_detectron2/{split}/<stem>.tif  (uint16 TIFF: 0..846, 65535 = ignore)\n"
            "written from the original release (ADE20K_2021_17_01/index_ade20k.pkl and its images) by:\n"
            "  lseg-pacl data prepare ade847 src=ADE20K_2021_17_01 [root=DIR]",
        ),
        Benchmark(
            "pc459",
            "VOCdevkit/VOC2010",
            PC459,
            "val",
            listing="masks",
            image_dir="JPEGImages",
            mask_dir="annotations_detectron2/pc459_{split}",
            zero_is_ignore=False,
            ignore_index=IGNORE_INDEX_16,
            masks=(MaskName(".tif", converted=True),),
            prepared="*.tif",
            layout="VOCdevkit/VOC2010/\n  JPEGImages/<id>.jpg\n"
            "  annotations_detectron2/pc459_{split}/<id>.tif  (uint16 TIFF: 0..458, 65535 = ignore; every "
            ".tif is a sample)\n"
            "written from trainval/<id>.mat (Pascal Context's trainval.tar.gz) by:\n"
            "  lseg-pacl data prepare pc459 src=VOCdevkit/VOC2010 [root=DIR]",
        ),
        Benchmark(
            "synthetic",
            "ADEChallengeData2016",
            None,
            "validation",
            **_FOLDERS,
            layout=_ade_layout("ADEChallengeData2016") + "\nand classnames.json (a JSON list) beside it",
        ),
    )
}
CAPTION_DATASETS = ("coco_captions", "shards")
DATASET_NAMES = (*BENCHMARKS, *CAPTION_DATASETS)


def benchmark(name: str) -> Benchmark:
    if name not in BENCHMARKS:
        raise ValueError(f"unknown segmentation dataset '{name}'; known: {', '.join(BENCHMARKS)}")
    return BENCHMARKS[name]


def dataset_dir(bench: Benchmark, root: str | Path) -> Path:
    """``root`` may be the dataset's own folder or a data root holding it under its standard name."""
    root = Path(root).expanduser()
    return root / bench.folder if (root / bench.folder).is_dir() else root


def map_labels(raw: np.ndarray, lut: np.ndarray) -> tuple[np.ndarray | None, list[int]]:
    """(contiguous ids, []) or (None, the offending raw ids) when the mask holds ids the dataset lacks. The
    ids come as uint8 when the table's values all fit (every 255-ignore benchmark), else as uint16."""
    if raw.size and (raw.min() < 0 or raw.max() >= len(lut)):
        bad = np.unique(raw[(raw < 0) | (raw >= len(lut))])
        return None, bad[:8].tolist()
    mapped = lut[raw]
    if (mapped == INVALID).any():
        return None, np.unique(raw[mapped == INVALID])[:8].tolist()
    return mapped.astype(np.uint8 if lut.max() <= 255 else np.uint16), []
