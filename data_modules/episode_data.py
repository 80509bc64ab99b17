"""The DataModule of LSeg's zero-shot training: 2-way episodes of one episode benchmark's seen classes
(data_modules/episodes), validated on dense benchmarks (if any) and then on the episodes of each fold's unseen
classes, one DataLoader each, in that order."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import lightning as L
from torch.utils.data import DataLoader, Dataset

from data_modules.ranks import place
from data_modules.samplers import train_loader
from data_modules.segmentation import SegmentationDataModule, collate_segmentation, val_loader


class EpisodeDataModule(L.LightningDataModule):
    """``train``: the training episodes (a Dataset taking (epoch, index) keys); ``dense``: the dense
    validation benchmarks' DataModule (or None); ``episodes``: the validation episode sets, in the order of
    the objective's episode benchmarks; ``epoch_of(trainer)``: the Trainer's epoch (orders the samples)."""

    def __init__(
        self,
        train: Dataset,
        episodes: Sequence[Dataset],
        batch_size: int,
        val_batch_size: int,
        num_workers: int,
        seed: int,
        epoch_of: Callable[[L.Trainer], int],
        dense: SegmentationDataModule | None = None,
    ) -> None:
        super().__init__()
        self.train_set, self.episode_sets, self.dense = train, list(episodes), dense
        self.batch_size, self.val_batch_size = batch_size, val_batch_size
        self.num_workers, self.seed, self.epoch_of = num_workers, seed, epoch_of

    def setup(self, stage: str | None = None) -> None:
        if self.dense is not None:
            self.dense.setup("validate")

    def current_epoch(self) -> int:
        return self.epoch_of(self.trainer) if self.trainer is not None else 0

    def train_dataloader(self) -> DataLoader:
        return train_loader(
            self.train_set,
            self.current_epoch,
            self.seed,
            self.batch_size,
            self.num_workers,
            collate_segmentation,
        )

    def val_dataloader(self) -> list[DataLoader]:
        dense = self.dense.val_dataloader() if self.dense is not None else []
        episodes = [val_loader(s, self.val_batch_size, self.num_workers, *place()) for s in self.episode_sets]
        return [*dense, *episodes]
