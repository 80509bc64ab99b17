"""The segmentation benchmarks: where each lives on disk, how its files pair up, and how raw mask ids map to
contiguous class ids (255 = ignore everywhere). Conventions follow MMSegmentation
(docs/datasets.md#benchmarks-and-labels).

Each mapping is a lookup table over every possible raw id (16-bit masks included); -1 marks ids the dataset
never uses, which make the sample bad ("label_out_of_range") rather than silently wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data_modules.classnames import (
    ADE20K_150,
    COCO_STUFF171,
    COCO_STUFF_RAW_IDS,
    CONTEXT59,
    CONTEXT60,
    VOC20,
    VOC21,
    read_classnames,
)

IGNORE_INDEX = 255
LUT_SIZE = 1 << 16
INVALID = -1


def shifted_lut(num_classes: int, zero_is_ignore: bool) -> np.ndarray:
    """Raw ids 0..num_classes (zero_is_ignore: 0 -> 255, k -> k-1) or 0..num_classes-1 kept; 255 stays 255."""
    lut = np.full(LUT_SIZE, INVALID, dtype=np.int16)
    if zero_is_ignore:
        lut[0] = IGNORE_INDEX
        lut[1 : num_classes + 1] = np.arange(num_classes)
    else:
        lut[:num_classes] = np.arange(num_classes)
    lut[IGNORE_INDEX] = IGNORE_INDEX
    return lut


def coco_stuff_raw_lut() -> np.ndarray:
    """Official stuffthingmaps ids 0..181: the 171 used ids in order -> 0..170; the 11 unused ids -> 255, as
    MMSegmentation's converter does; 255 (unlabeled) stays."""
    lut = np.full(LUT_SIZE, INVALID, dtype=np.int16)
    lut[:182] = IGNORE_INDEX
    lut[list(COCO_STUFF_RAW_IDS)] = np.arange(len(COCO_STUFF_RAW_IDS))
    lut[IGNORE_INDEX] = IGNORE_INDEX
    return lut


@dataclass(frozen=True)
class Pair:
    image: Path
    mask: Path
    converted: bool = False  # COCO-Stuff: an MMSeg <stem>_labelTrainIds.png (already 0..170)


@dataclass(frozen=True)
class Benchmark:
    """One benchmark's on-disk convention. ``listing`` is "folders" (images/<split>/*.jpg beside
    annotations/<split>/<stem>.png) or "split_file" (ids listed in ``split_file``)."""

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

    def class_names(self, dataset_dir: Path | None = None) -> tuple[str, ...]:
        if self.classes is not None:
            return self.classes
        if dataset_dir is None:
            raise ValueError(f"{self.name} states its classes in <root>/classnames.json: pass root=DIR")
        return read_classnames(Path(dataset_dir).parent / "classnames.json")

    def lut(self, num_classes: int, converted: bool = False) -> np.ndarray:
        if self.name == "coco_stuff171" and not converted:
            return coco_stuff_raw_lut()
        return shifted_lut(num_classes, self.zero_is_ignore and not converted)

    def pairs(self, dataset_dir: Path, split: str) -> list[Pair]:
        """Every listed sample (files may be missing: loading counts those), in a fixed order."""
        d = Path(dataset_dir)
        images = d / self.image_dir.format(split=split)
        masks = d / self.mask_dir.format(split=split)
        if self.listing == "split_file":
            ids = [
                line.strip() for line in (d / self.split_file.format(split=split)).read_text().splitlines()
            ]
            return [Pair(images / f"{i}.jpg", masks / f"{i}.png") for i in ids if i]
        out = []
        for image in sorted(images.glob("*.jpg")):
            converted = masks / f"{image.stem}_labelTrainIds.png"
            if self.name == "coco_stuff171" and converted.is_file():
                out.append(Pair(image, converted, converted=True))
            else:
                out.append(Pair(image, masks / f"{image.stem}.png"))
        return out

    def missing(self, dataset_dir: Path, split: str) -> str | None:
        """Why this folder is not a readable copy of the dataset (None when it is)."""
        d = Path(dataset_dir)
        need = [d / self.image_dir.format(split=split), d / self.mask_dir.format(split=split)]
        if self.listing == "split_file":
            need.append(d / self.split_file.format(split=split))
        absent = [p for p in need if not p.exists()]
        if absent:
            return f"{', '.join(str(p) for p in absent)} not found"
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
            layout="coco_stuff164k/\n  images/{split}/<stem>.jpg\n  annotations/{split}/<stem>.png  "
            "(official stuffthingmaps, ids 0..181, 255 = unlabeled)\n  or annotations/{split}/"
            "<stem>_labelTrainIds.png  (MMSegmentation's converted masks, 0..170)",
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
    """(contiguous uint8 ids, []) or (None, the offending raw ids) when the mask holds ids the dataset
    lacks."""
    if raw.size and (raw.min() < 0 or raw.max() >= len(lut)):
        bad = np.unique(raw[(raw < 0) | (raw >= len(lut))])
        return None, bad[:8].tolist()
    mapped = lut[raw]
    if (mapped == INVALID).any():
        return None, np.unique(raw[mapped == INVALID])[:8].tolist()
    return mapped.astype(np.uint8), []
