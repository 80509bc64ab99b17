"""Samplers for several processes: evaluation without padding, training shuffled per epoch.

Lightning's automatic DistributedSampler pads an evaluation set to a multiple of the world size with repeated
images, which changes mIoU; here each rank takes every world-th image (rank, rank + world, ...) and nothing is
repeated or dropped (the metric sums its confusion matrices over ranks). With one process no sampler is used,
so single-process runs are unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator

from torch.utils.data import Dataset, DistributedSampler, Sampler


class EvalShardSampler(Sampler[int]):
    def __init__(self, size: int, rank: int, world_size: int) -> None:
        self.size, self.rank, self.world_size = size, rank, world_size

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.size, self.world_size))

    def __len__(self) -> int:
        return len(range(self.rank, self.size, self.world_size))


def eval_sampler(dataset: Dataset, rank: int, world_size: int) -> Sampler | None:
    return EvalShardSampler(len(dataset), rank, world_size) if world_size > 1 else None


def train_sampler(dataset: Dataset, rank: int, world_size: int, seed: int) -> Sampler | None:
    """Shuffled, equal share per rank (drop_last), reshuffled each epoch (Lightning calls set_epoch)."""
    if world_size == 1:
        return None
    return DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=True)


def place_of(module) -> tuple[int, int]:
    """(rank, world size) of the Trainer a DataModule is attached to; (0, 1) before that."""
    trainer = getattr(module, "trainer", None)
    return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
