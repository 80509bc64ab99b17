"""Samplers: evaluation without padding under several processes; training shuffled per epoch and resumable.

Lightning's automatic DistributedSampler pads an evaluation set to a multiple of the world size with repeated
images, which changes mIoU; here each rank takes every world-th image (rank, rank + world, ...) and nothing is
repeated or dropped (the metric sums its confusion matrices over ranks); ranks with fewer images get empty
batches at the end, so that all run the same number of steps. With one process no sampler is used,
so single-process runs are unchanged.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from data_modules.ranks import place
from data_modules.workers import worker_options


class EvalShardSampler(Sampler[int]):
    def __init__(self, size: int, rank: int, world_size: int) -> None:
        self.size, self.rank, self.world_size = size, rank, world_size

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.size, self.world_size))

    def __len__(self) -> int:
        return len(range(self.rank, self.size, self.world_size))


class EvalShardBatches(Sampler[list[int]]):
    """This rank's share in batches, padded with empty batches so that every rank runs the same number of
    validation steps (DDP's forward broadcasts buffers each step: unequal counts would leave a rank
    waiting)."""

    def __init__(self, size: int, batch_size: int, rank: int, world_size: int) -> None:
        self.shard = EvalShardSampler(size, rank, world_size)
        self.batch_size = batch_size
        self.steps = max(
            1, -(-len(EvalShardSampler(size, 0, world_size)) // batch_size)
        )  # rank 0 has the most

    def __iter__(self) -> Iterator[list[int]]:
        indices = list(self.shard)
        for step in range(self.steps):
            yield indices[step * self.batch_size : (step + 1) * self.batch_size]

    def __len__(self) -> int:
        return self.steps


def eval_batches(dataset: Dataset, batch_size: int, rank: int, world_size: int) -> Sampler | None:
    return EvalShardBatches(len(dataset), batch_size, rank, world_size) if world_size > 1 else None


def mix(*values: int) -> int:
    """One 63-bit seed from several integers (seed, epoch, index, rank, step ...), stable across runs."""
    h = hashlib.blake2b(digest_size=8)
    for v in values:
        h.update(int(v).to_bytes(8, "little", signed=True))
    return int.from_bytes(h.digest(), "little") >> 1


def sample_generator(seed: int, key: tuple[int, int]) -> torch.Generator:
    """The random stream of one training sample in one epoch (caption draw, augmentation): a function of
    (seed, epoch, index) alone, so that a resumed run draws exactly what an uninterrupted one would."""
    return torch.Generator().manual_seed(mix(seed, *key))


class EpochSampler(Sampler[tuple[int, int]]):
    """Training order for map-style data: yields (epoch, index) keys, a permutation drawn from (seed, epoch),
    this rank's equal share (every world-th of the first len - len % world, as DistributedSampler with
    drop_last).

    The epoch is read from ``epoch_of()`` when an iteration starts (the Trainer's epoch counter: right after a
    resume and with persistent workers, unlike set_epoch). ``skip_next(epoch, n)`` passes over the first ``n``
    samples of that epoch once: the part of it a resumed run had already trained on."""

    def __init__(self, size: int, rank: int, world_size: int, seed: int, epoch_of: Callable[[], int]) -> None:
        self.size, self.rank, self.world_size, self.seed = size, rank, world_size, seed
        self.epoch_of = epoch_of
        self._skip: tuple[int, int] | None = None

    def skip_next(self, epoch: int, samples: int) -> None:
        self._skip = (epoch, samples)

    def order(self, epoch: int) -> list[int]:
        perm = torch.randperm(
            self.size, generator=torch.Generator().manual_seed(mix(self.seed, epoch))
        ).tolist()
        usable = self.size - self.size % self.world_size
        return perm[self.rank : usable : self.world_size]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = int(self.epoch_of())
        start = self._skip[1] if self._skip is not None and self._skip[0] == epoch else 0
        self._skip = None
        return iter([(epoch, i) for i in self.order(epoch)[start:]])

    def __len__(self) -> int:
        return self.size // self.world_size


class ResumableLoader(DataLoader):
    """A training DataLoader whose position within an epoch is saved in checkpoints (Lightning stores the
    ``state_dict`` of a loader that has one) and restored: a run resumed mid-epoch continues with the next
    batch an uninterrupted run would have taken. ``position`` (epoch, batches trained on) is kept by the
    Trainer's callbacks (lseg_pacl/training/data_hooks.py), not read off what the workers have prefetched."""

    def __init__(self, dataset: Dataset, sampler: EpochSampler, **kwargs) -> None:
        super().__init__(dataset, sampler=sampler, **kwargs)
        self.position = (0, 0)

    def begin_epoch(self, epoch: int) -> None:
        self.position = (epoch, 0)

    def trained(self, batch: dict) -> None:
        self.position = (self.position[0], self.position[1] + 1)

    def state_dict(self) -> dict:
        return {"epoch": self.position[0], "batches": self.position[1], "batch_size": int(self.batch_size)}

    def load_state_dict(self, state: dict) -> None:
        if state.get("batch_size") != self.batch_size:
            raise ValueError(
                f"the checkpoint's batch size {state.get('batch_size')} differs from this run's "
                f"{self.batch_size}: its position in the epoch cannot be restored"
            )
        self.position = (int(state["epoch"]), int(state["batches"]))
        self.sampler.skip_next(self.position[0], self.position[1] * self.batch_size)


def train_loader(
    dataset: Dataset,
    epoch_of: Callable[[], int],
    seed: int,
    batch_size: int,
    num_workers: int,
    collate_fn: Callable,
) -> ResumableLoader:
    """The shuffled, resumable training DataLoader of a map-style set for this process; ``epoch_of()`` is the
    Trainer's epoch when an iteration starts; workers as in workers.py."""
    rank, world_size = place()
    sampler = EpochSampler(len(dataset), rank, world_size, seed, epoch_of)
    return ResumableLoader(
        dataset,
        sampler,
        batch_size=batch_size,
        drop_last=True,
        num_workers=num_workers,
        collate_fn=collate_fn,
        persistent_workers=num_workers > 0,
        **worker_options(num_workers),
    )
