"""Torch's random state as a function of (seed, rank, step, batch in the epoch): what a training batch draws
(noun templates, dropout) does not depend on anything before it, so a resumed run draws what an uninterrupted
one would (Lightning's checkpoints hold no RNG state); the batch index keeps the micro-batches of one
accumulated step apart."""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from data_modules.ranks import rank
from data_modules.samplers import mix


class StepSeed(Callback):
    def __init__(self, seed: int) -> None:
        self.seed = seed

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int
    ) -> None:
        torch.manual_seed(mix(self.seed, rank(), trainer.global_step, batch_idx))
