"""Samplers for several processes: evaluation without padding, training shuffled per epoch.

Lightning's automatic DistributedSampler pads an evaluation set to a multiple of the world size with repeated
images, which changes mIoU; here each rank takes every world-th image (rank, rank + world, ...) and nothing is
repeated or dropped (the metric sums its confusion matrices over ranks); ranks with fewer images get empty
batches at the end, so that all run the same number of steps. With one process no sampler is used,
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


class EvalShardBatches(Sampler[list[int]]):
    """This rank's share in batches, padded with empty batches so that every rank runs the same number of
    validation steps (DDP's forward broadcasts buffers each step: unequal counts would leave a rank waiting)."""

    def __init__(self, size: int, batch_size: int, rank: int, world_size: int) -> None:
        self.shard = EvalShardSampler(size, rank, world_size)
        self.batch_size = batch_size
        self.steps = max(1, -(-len(EvalShardSampler(size, 0, world_size)) // batch_size))  # rank 0 has the most

    def __iter__(self) -> Iterator[list[int]]:
        indices = list(self.shard)
        for step in range(self.steps):
            yield indices[step * self.batch_size:(step + 1) * self.batch_size]

    def __len__(self) -> int:
        return self.steps


def eval_batches(dataset: Dataset, batch_size: int, rank: int, world_size: int) -> Sampler | None:
    return EvalShardBatches(len(dataset), batch_size, rank, world_size) if world_size > 1 else None


def train_sampler(dataset: Dataset, rank: int, world_size: int, seed: int) -> Sampler | None:
    """Shuffled, equal share per rank (drop_last), reshuffled each epoch (Lightning calls set_epoch)."""
    if world_size == 1:
        return None
    return DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=True)


def place_of(module) -> tuple[int, int]:
    """(rank, world size) of the Trainer a DataModule is attached to; (0, 1) before that."""
    trainer = getattr(module, "trainer", None)
    return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
