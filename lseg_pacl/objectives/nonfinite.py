"""Non-finite losses: a step whose loss is NaN or infinite on any rank is skipped on every rank, and too many
in a row stop the run (bf16-mixed has no GradScaler to catch them, so without this a NaN reaches the
weights)."""

from __future__ import annotations

import torch

from data_modules.ranks import distributed


class NonFiniteGuard:
    def __init__(self, limit: int) -> None:
        self.limit = limit  # skipped steps in a row that stop the run (optim.max_nonfinite_steps)
        self.total = 0  # skipped steps so far in this process
        self.in_a_row = 0
        self.skip_update = False  # the current step's decision, read by optimizer_step under DDP

    def check(self, loss: torch.Tensor) -> bool:
        """Whether ``loss`` is finite on every rank (all ranks decide the same); counts the skips."""
        finite = torch.isfinite(loss.detach()).all().float().reshape(1)
        if distributed():
            torch.distributed.all_reduce(finite, op=torch.distributed.ReduceOp.MIN)
        self.skip_update = finite.item() != 1.0
        if self.skip_update:
            self.total += 1
            self.in_a_row += 1
        else:
            self.in_a_row = 0
        return not self.skip_update

    @property
    def exhausted(self) -> bool:
        return self.in_a_row >= self.limit
