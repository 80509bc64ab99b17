"""Semantic-segmentation benchmarks in their standard on-disk layouts, and the DataModule serving them.

ADE20K (``ADEChallengeData2016/{images,annotations}/{training,validation}``): raw 0 = unlabeled -> 255,
raw k -> k - 1. The synthetic world is written in the same layout with its own ``classnames.json``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from data_modules.classnames import ADE20K_150, read_classnames
from data_modules.images import read_label_png, read_rgb

IGNORE_INDEX = 255


def ade_label_map(raw: np.ndarray, num_classes: int, where: Path) -> np.ndarray:
    """ADE20K convention: 0 -> ignore (255), 1..N -> 0..N-1; anything else is an error naming the file."""
    if raw.size and (raw.min() < 0 or raw.max() > num_classes):
        raise ValueError(f"{where}: label ids {int(raw.min())}..{int(raw.max())} outside 0..{num_classes}")
    out = raw - 1
    out[raw == 0] = IGNORE_INDEX
    return out.astype(np.uint8)


class AdeLayoutSegmentation(Dataset):
    """(image, mask) pairs of an ADE20K-layout folder; masks hold contiguous ids with 255 = ignore."""

    def __init__(self, root: str | Path, split: str, class_names: tuple[str, ...], transform: Callable,
                 max_images: int | None = None) -> None:
        self.root = Path(root)
        self.class_names = class_names
        self.transform = transform
        image_dir = self.root / "images" / split
        ann_dir = self.root / "annotations" / split
        if not image_dir.is_dir() or not ann_dir.is_dir():
            raise FileNotFoundError(f"segmentation data not found: expected {image_dir} and {ann_dir} "
                                    f"(the ADEChallengeData2016 layout)")
        pairs = []
        for image in sorted(image_dir.glob("*.jpg")):
            mask = ann_dir / f"{image.stem}.png"
            if mask.is_file():
                pairs.append((image, mask))
        if not pairs:
            raise FileNotFoundError(f"no image/mask pairs (<stem>.jpg with <stem>.png) under {self.root} ({split})")
        self.pairs = pairs[:max_images] if max_images else pairs

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        image_file, mask_file = self.pairs[index]
        image = read_rgb(image_file)
        mask = ade_label_map(read_label_png(mask_file), len(self.class_names), mask_file)
        if mask.shape != image.shape[:2]:
            raise ValueError(f"{mask_file}: mask size {mask.shape} differs from image size {image.shape[:2]}")
        out = self.transform(image=image, mask=mask)
        return {"image": out["image"], "mask": torch.as_tensor(np.asarray(out["mask"]), dtype=torch.long)}


def class_names_for(dataset: str, root: Path) -> tuple[str, ...]:
    if dataset == "ade20k":
        return ADE20K_150
    if dataset == "synthetic":
        return read_classnames(root.parent / "classnames.json")
    raise ValueError(f"unknown segmentation dataset '{dataset}'")


class SegmentationDataModule(L.LightningDataModule):
    """Serves one segmentation benchmark for validation (zero-shot) and, later, for mask-supervised training."""

    def __init__(self, dataset: str, root: str | Path, split: str, transform: Callable, batch_size: int,
                 num_workers: int, max_images: int | None = None) -> None:
        super().__init__()
        self.dataset, self.root, self.split = dataset, Path(root), split
        self.transform, self.batch_size, self.num_workers = transform, batch_size, num_workers
        self.max_images = max_images
        self.class_names = class_names_for(dataset, self.root)
        self.val_set: AdeLayoutSegmentation | None = None

    @property
    def val_class_names(self) -> tuple[str, ...]:
        return self.class_names

    def setup(self, stage: str | None = None) -> None:
        if self.val_set is None:
            self.val_set = AdeLayoutSegmentation(self.root, self.split, self.class_names, self.transform,
                                                 self.max_images)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.batch_size, shuffle=False, num_workers=self.num_workers,
                          persistent_workers=False)
