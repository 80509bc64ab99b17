"""The optimizer and its learning-rate schedule, from the optim.* config: parameter groups with and without
weight decay per learning-rate multiplier, a linear warm-up, then the named schedule, stepped every optimizer
step or once per epoch (``schedule_interval``)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from omegaconf import DictConfig
from torch import nn

from lseg_pacl.errors import ConfigError

NamedGroups = list[
    tuple[list[tuple[str, nn.Parameter]], float]
]  # (named parameters, lr multiplier) per group

OPTIMIZERS: dict[str, Callable[[list[dict], DictConfig], torch.optim.Optimizer]] = {
    "adamw": lambda groups, o: torch.optim.AdamW(groups, lr=o.lr, betas=tuple(o.betas), eps=o.eps),
    "sgd": lambda groups, o: torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum),
}

# progress in [0, 1] after warm-up -> learning-rate factor
SCHEDULES: dict[str, Callable[[float, DictConfig], float]] = {
    "constant": lambda progress, o: 1.0,
    "cosine": lambda progress, o: 0.5 * (1.0 + math.cos(math.pi * progress)),
    "poly": lambda progress, o: (1.0 - progress) ** o.poly_power,
}


def _decays(name: str, p: nn.Parameter) -> bool:
    """Weight decay on matrices only: not on biases, norms, scales or embeddings."""
    return p.ndim >= 2 and "embedding" not in name


def param_groups(named_groups: NamedGroups, o: DictConfig) -> list[dict]:
    groups = []
    for named, mult in named_groups:
        decay = [p for n, p in named if _decays(n, p)]
        no_decay = [p for n, p in named if not _decays(n, p)]
        groups += [
            {"params": decay, "weight_decay": o.weight_decay, "lr": o.lr * mult},
            {"params": no_decay, "weight_decay": 0.0, "lr": o.lr * mult},
        ]
    return [g for g in groups if g["params"]]


def lr_factor(o: DictConfig, total_steps: int) -> Callable[[int], float]:
    """The factor on every group's learning rate at each step: warm-up, then the schedule over the rest."""
    total = max(1, total_steps)
    warmup = min(o.warmup_steps, total)
    schedule = SCHEDULES[o.schedule]

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return schedule(min(1.0, (step - warmup) / max(1, total - warmup)), o)

    return factor


INTERVALS = ("step", "epoch")


def configure_optimization(
    named_groups: NamedGroups, o: DictConfig, total_steps: int, total_epochs: int | None = None
) -> dict:
    """What a LightningModule's configure_optimizers returns; the schedule spans ``total_steps`` optimizer
    steps, or ``total_epochs`` epochs under ``schedule_interval: epoch``."""
    if o.schedule_interval not in INTERVALS:
        raise ConfigError(f"optim.schedule_interval must be one of {', '.join(INTERVALS)}, "
                          f"not '{o.schedule_interval}'")
    if o.schedule_interval == "epoch" and not (total_epochs and total_epochs > 0):
        raise ConfigError("optim.schedule_interval=epoch spans trainer.max_epochs: set it (> 0)")
    total = total_epochs if o.schedule_interval == "epoch" else total_steps
    optimizer = OPTIMIZERS[o.name](param_groups(named_groups, o), o)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(o, total))
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": o.schedule_interval}}
