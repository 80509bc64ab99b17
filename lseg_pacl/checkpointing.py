"""Where a run's checkpoints go: last.ckpt, always the newest state, and the best by val/mIoU.

Lightning's ModelCheckpoint writes ``last`` only together with a new best when it monitors a metric, so a resume
would go back to the best step; this callback writes last.ckpt at every epoch end and validation end instead.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

LAST = "last.ckpt"


class SaveLast(Callback):
    """Write ``<dir>/last.ckpt`` at each epoch end and validation end during fit (the newest state)."""

    def __init__(self, directory: Path) -> None:
        self.path = Path(directory) / LAST

    def _save(self, trainer: L.Trainer) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit" or trainer.global_step == 0:
            return
        trainer.save_checkpoint(self.path)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._save(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._save(trainer)


def checkpoint_callbacks(directory: Path) -> list[Callback]:
    """last.ckpt (newest) and best-step<N>.ckpt (best val/mIoU so far)."""
    best = ModelCheckpoint(dirpath=directory, filename="best-step{step}", auto_insert_metric_name=False,
                           monitor="val/mIoU", mode="max", save_top_k=1, save_last=False)
    return [SaveLast(directory), best]
