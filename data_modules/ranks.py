"""This process's place among the processes of a run, asked one way everywhere: (rank, world size).

Once the process group is up (under DDP, from the Trainer's setup on) it is the group's answer; before that,
the launcher's announcement (torchrun's RANK / WORLD_SIZE, SLURM's SLURM_PROCID / SLURM_NTASKS, LOCAL_RANK);
with neither, a single process (0, 1).
"""

from __future__ import annotations

import os

import torch.distributed as dist


def _env_int(names: tuple[str, ...], default: int) -> int:
    for name in names:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return default


def place() -> tuple[int, int]:
    """(rank, world size) of this process."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return _env_int(("RANK", "SLURM_PROCID", "LOCAL_RANK"), 0), _env_int(("WORLD_SIZE", "SLURM_NTASKS"), 1)


def rank() -> int:
    return place()[0]


def distributed() -> bool:
    """Whether collectives are live: a process group with more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
