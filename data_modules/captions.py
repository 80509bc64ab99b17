"""Image-caption pairs in the COCO captions layout, and the DataModule that trains on them.

Layout: ``<root>/annotations/captions_<split>.json`` (images[], annotations[] with image_id and caption) beside
``<root>/<split>/*.jpg``. One caption is drawn per image per epoch. An annotation may carry a ``nouns`` list (the
synthetic world writes the exact nouns of each caption); PACL's noun-prompt augmentation uses it.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from data_modules.images import read_rgb
from data_modules.transforms import seeded

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CaptionRecord:
    file: Path
    captions: tuple[str, ...]
    nouns: tuple[tuple[str, ...], ...]  # per caption; empty when the annotation names none


def read_coco_captions(root: Path, split: str) -> list[CaptionRecord]:
    """Every image of a COCO-captions split with at least one non-empty caption, in image-id order."""
    ann_file = root / "annotations" / f"captions_{split}.json"
    image_dir = root / split
    if not ann_file.is_file():
        raise FileNotFoundError(f"caption annotations not found: {ann_file} (expected the COCO captions layout: "
                                f"<root>/annotations/captions_<split>.json beside <root>/<split>/*.jpg)")
    data = json.loads(ann_file.read_text(encoding="utf-8"))
    caps: dict[int, list[tuple[str, tuple[str, ...]]]] = defaultdict(list)
    empty = 0
    for ann in data.get("annotations", []):
        text = str(ann.get("caption", "")).strip()
        if not text:
            empty += 1
            continue
        caps[int(ann["image_id"])].append((text, tuple(ann.get("nouns", ()))))
    records = []
    for img in sorted(data.get("images", []), key=lambda im: int(im["id"])):
        pairs = caps.get(int(img["id"]))
        if pairs:
            records.append(CaptionRecord(image_dir / img["file_name"], tuple(p[0] for p in pairs),
                                         tuple(p[1] for p in pairs)))
    if empty:
        log.warning("%s: skipped %d empty captions", ann_file, empty)
    if not records:
        raise ValueError(f"{ann_file} holds no image with a caption")
    return records


class CocoCaptions(Dataset):
    """(image, one caption drawn at random, that caption's nouns) per image."""

    def __init__(self, root: str | Path, split: str, transform: Callable) -> None:
        self.root = Path(root)
        self.records = read_coco_captions(self.root, split)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        rec = self.records[index]
        pick = int(torch.randint(len(rec.captions), ()).item())
        image = seeded(self.transform, image=read_rgb(rec.file))["image"]
        return {"image": image, "caption": rec.captions[pick], "nouns": list(rec.nouns[pick])}


def collate_captions(batch: list[dict]) -> dict:
    return {
        "image": torch.stack([b["image"] for b in batch]),
        "caption": [b["caption"] for b in batch],
        "nouns": [b["nouns"] for b in batch],
    }


class CaptionDataModule(L.LightningDataModule):
    """Trains on captions; validates through a segmentation DataModule (zero-shot), when one is given."""

    def __init__(self, root: str | Path, split: str, transform: Callable, batch_size: int, num_workers: int,
                 val: L.LightningDataModule | None = None) -> None:
        super().__init__()
        self.root, self.split, self.transform = Path(root), split, transform
        self.batch_size, self.num_workers = batch_size, num_workers
        self.val = val
        self.train_set: CocoCaptions | None = None

    @property
    def val_class_names(self) -> tuple[str, ...]:
        if self.val is None:
            raise RuntimeError("this caption DataModule has no validation benchmark")
        return self.val.class_names

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit") and self.train_set is None:
            self.train_set = CocoCaptions(self.root, self.split, self.transform)
        if self.val is not None:
            self.val.setup("validate")

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True, drop_last=True,
                          num_workers=self.num_workers, collate_fn=collate_captions,
                          persistent_workers=self.num_workers > 0)

    def val_dataloader(self) -> DataLoader:
        if self.val is None:
            return []
        return self.val.val_dataloader()
