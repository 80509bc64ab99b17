"""Segmentation samples of any benchmark (benchmarks.py), and the DataModule that serves a set of them.

A bad sample (missing or unreadable file, mask ids the dataset does not use, image/mask size mismatch) is
returned as a ``Skipped`` marker and counted downstream (bad_samples.py). EXIF orientation: the image is used
as viewers show it when that matches the mask; when only the stored pixels match, the stored pixels are used
and the sample is noted ("exif_ignored"); when neither matches it is a size mismatch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from data_modules.bad_samples import EVENTS, BadSample, Skipped, collate_with_events
from data_modules.benchmarks import IGNORE_INDEX, Benchmark, Pair, benchmark, dataset_dir, map_labels
from data_modules.images import as_viewed, decode_rgb, read_label_png
from data_modules.ranks import place
from data_modules.samplers import eval_batches, sample_generator, train_loader
from data_modules.transforms import seeded
from data_modules.workers import worker_options

__all__ = ["IGNORE_INDEX", "SegmentationSet", "SegmentationDataModule", "load_pair", "collate_segmentation"]


@dataclass
class LoadedPair:
    image: np.ndarray  # RGB uint8 [H, W, 3]
    mask: np.ndarray  # contiguous ids [H, W]: uint8 (255 = ignore), or uint16 (65535 = ignore: ade847, pc459)
    notes: list[tuple[str, str]]


def load_pair(pair: Pair, lut: np.ndarray) -> LoadedPair:
    """Read and map one image/mask pair; raises ``BadSample`` naming the file and the reason."""
    raw = read_label_png(pair.mask)
    mask, bad = map_labels(raw, lut)
    if mask is None:
        raise BadSample("label_out_of_range", pair.mask, f"raw ids {bad} are not used by this dataset")
    stored, orientation = decode_rgb(pair.image)
    viewed = as_viewed(stored, orientation)
    notes: list[tuple[str, str]] = []
    hw = mask.shape
    if (viewed.height, viewed.width) == hw:
        image = viewed
    elif (stored.height, stored.width) == hw:
        image = stored
        notes.append(("exif_ignored", str(pair.image)))
    else:
        raise BadSample("size_mismatch", pair.image,
                        f"image {viewed.height}x{viewed.width}, mask {hw[0]}x{hw[1]} ({pair.mask.name})")
    return LoadedPair(np.asarray(image), mask, notes)


class SegmentationSet(Dataset):
    """(image, mask) samples of one benchmark split; bad ones come back as ``Skipped``."""

    def __init__(self, name: str, root: str | Path, split: str | None, transform: Callable,
                 max_images: int | None = None, augment: bool = False, seed: int = 0) -> None:
        self.bench: Benchmark = benchmark(name)
        self.dir = dataset_dir(self.bench, root)
        self.split = self.bench.split_name(split)
        why = self.bench.missing(self.dir, self.split)
        if why:
            raise FileNotFoundError(
                f"{name} ({self.split}) not found under {self.dir}: {why}. Expected layout:\n"
                f"{self.bench.expected_layout(self.split)}"
            )
        self.class_names = self.bench.class_names(self.dir)
        self.ignore_index = self.bench.ignore_index  # 255, or 65535 for the 16-bit TIFF benchmarks
        self.transform, self.augment = transform, augment  # augment: a random transform, seeded per sample
        self.seed = seed
        pairs = self.bench.pairs(self.dir, self.split)
        if not pairs:
            raise FileNotFoundError(
                f"{name} ({self.split}) under {self.dir} lists no images. Expected layout:\n"
                f"{self.bench.expected_layout(self.split)}"
            )
        self.pairs = pairs[:max_images] if max_images else pairs
        num = len(self.class_names)
        self._luts = {False: self.bench.lut(num, False), True: self.bench.lut(num, True)}

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, index: int) -> LoadedPair:
        pair = self.pairs[index]
        return load_pair(pair, self._luts[pair.converted])

    def __getitem__(self, key: int | tuple[int, int]) -> dict | Skipped:
        """``key``: an index, or (epoch, index) from the training sampler (augmentation drawn from seed, epoch
        and index)."""
        index = key[1] if isinstance(key, tuple) else key
        try:
            loaded = self.load(index)
        except BadSample as exc:
            return Skipped.of(exc)
        if self.augment:
            g = sample_generator(self.seed, key) if isinstance(key, tuple) else None
            out = seeded(self.transform, g, image=loaded.image, mask=loaded.mask)
        else:
            out = self.transform(image=loaded.image, mask=loaded.mask)
        return {
            "image": out["image"],
            "mask": torch.as_tensor(np.asarray(out["mask"]), dtype=torch.long),
            EVENTS: loaded.notes,
        }


def collate_segmentation(items: list) -> dict:
    return collate_with_events(items, default_collate)


class SegmentationDataModule(L.LightningDataModule):
    """Serves a set of benchmarks for zero-shot validation, one DataLoader each, in the order given, and, for
    mask-supervised training (LSeg), one benchmark's training split.

    ``roots`` maps each benchmark name to its folder (or to a data root holding it under its standard name);
    ``train`` is (name, root, split, transform) of the training set, and ``epoch_of(trainer)`` the epoch the
    Trainer is in (the training order depends on it).
    """

    def __init__(
        self,
        roots: dict[str, str | Path],
        split: str | None,
        transform: Callable,
        batch_size: int,
        num_workers: int,
        max_images: int | None = None,
        train: tuple[str, str | Path, str, Callable] | None = None,
        train_batch_size: int = 8,
        seed: int = 0,
        epoch_of: Callable[[L.Trainer], int] | None = None,
    ) -> None:
        super().__init__()
        if not roots:
            raise ValueError("no validation benchmark given")
        if train is not None and epoch_of is None:
            raise ValueError("a training split needs epoch_of: the Trainer's epoch orders its samples")
        self.roots, self.split = dict(roots), split
        self.transform, self.batch_size, self.num_workers = transform, batch_size, num_workers
        self.max_images = max_images
        self.train, self.train_batch_size, self.seed = train, train_batch_size, seed
        self.epoch_of = epoch_of
        self.val_sets: list[SegmentationSet] = []
        self.train_set: SegmentationSet | None = None

    def setup(self, stage: str | None = None) -> None:
        if not self.val_sets:
            self.val_sets = [
                SegmentationSet(name, root, self.split, self.transform, self.max_images)
                for name, root in self.roots.items()
            ]
        if self.train is not None and self.train_set is None:
            name, root, split, transform = self.train
            self.train_set = SegmentationSet(name, root, split, transform, augment=True, seed=self.seed)

    @property
    def val_benchmarks(self) -> list[tuple[str, tuple[str, ...]]]:
        """(name, class names) per validation DataLoader, in DataLoader order."""
        return [(s.bench.name, s.class_names) for s in self.val_sets]

    def current_epoch(self) -> int:
        return self.epoch_of(self.trainer) if self.trainer is not None and self.epoch_of is not None else 0

    def train_dataloader(self) -> DataLoader:
        return train_loader(
            self.train_set,
            self.current_epoch,
            self.seed,
            self.train_batch_size,
            self.num_workers,
            collate_segmentation,
        )

    def val_dataloader(self) -> list[DataLoader]:
        return [val_loader(s, self.batch_size, self.num_workers, *place()) for s in self.val_sets]


def val_loader(
    dataset: Dataset,
    batch_size: int,
    num_workers: int,
    rank: int = 0,
    world_size: int = 1,
) -> DataLoader:
    """In order; under several processes each rank takes its share without padding (samplers.py); workers
    as in workers.py."""
    workers = worker_options(num_workers)
    batches = eval_batches(dataset, batch_size, rank, world_size)
    if batches is None:
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=False,
            num_workers=num_workers,
            collate_fn=collate_segmentation,
            persistent_workers=False,
            **workers,
        )
    return DataLoader(
        dataset,
        batch_sampler=batches,
        num_workers=num_workers,
        collate_fn=collate_segmentation,
        persistent_workers=False,
        **workers,
    )
