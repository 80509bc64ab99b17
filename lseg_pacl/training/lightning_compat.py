"""The Lightning internals this project relies on where Lightning offers no public API, kept in this one
module; tests/lseg_pacl/training/test_lightning_compat.py fails when a Lightning release changes them."""

from __future__ import annotations

import lightning as L


def epoch_in_progress(trainer: L.Trainer) -> int:
    """The epoch the fit loop is in (or about to start): the count of epochs whose processing has begun.

    ``trainer.current_epoch`` counts completed epochs, which lags by one right after a save at an epoch's last
    validation; the training order, the shard order and a resumed loader's position must use the epoch whose
    batches are being drawn, which Lightning keeps only in its fit loop's progress counters."""
    return trainer.fit_loop.epoch_progress.current.processed
