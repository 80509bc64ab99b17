"""This process's place among the processes of a run, asked one way everywhere: (rank, world size).

Once the process group is up (under DDP, from the Trainer's setup on) it is the group's answer; before that,
the launcher's announcement (torchrun's RANK / WORLD_SIZE, SLURM's SLURM_PROCID / SLURM_NTASKS, LOCAL_RANK);
with neither, a single process (0, 1).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch.distributed as dist


def _env_int(environ: Mapping[str, str], names: tuple[str, ...], default: int) -> int:
    for name in names:
        value = environ.get(name, "")
        if value.isdigit():
            return int(value)
    return default


def place(environ: Mapping[str, str] | None = None) -> tuple[int, int]:
    """(rank, world size) of this process (``environ``: read that instead of this process's environment)."""
    if environ is None and dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    env = os.environ if environ is None else environ
    return (_env_int(env, ("RANK", "SLURM_PROCID", "LOCAL_RANK"), 0),
            _env_int(env, ("WORLD_SIZE", "SLURM_NTASKS"), 1))


def rank() -> int:
    return place()[0]


def distributed() -> bool:
    """Whether collectives are live: a process group with more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
