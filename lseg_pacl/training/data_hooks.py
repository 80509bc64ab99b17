"""Lightning callbacks that connect the Trainer to the data: the epoch a shard stream needs, and the counting
of bad samples that arrive with each batch (data_modules/bad_samples.py)."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import Callback

from data_modules.bad_samples import EVENTS, EXHAUSTED, SHARDS, DataQualityError, SkipCounter, batch_size_of
from lseg_pacl.errors import BadDataError
from lseg_pacl.training.lightning_compat import epoch_in_progress


class DataEpoch(Callback):
    """Tell the DataModule which epoch starts (shard order and augmentation depend on it).

    The epoch in progress rather than ``current_epoch``, which lags by one after a save at validation end
    (lightning_compat.py)."""

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        set_epoch = getattr(trainer.datamodule, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(epoch_in_progress(trainer))


class LoaderPosition(Callback):
    """Keep a resumable training loader's position (data_modules/samplers.py, shards.py): reset when an epoch
    starts, advanced after each trained batch. Lightning skips on_train_epoch_start when it resumes mid-epoch,
    so the position restored from the checkpoint carries on."""

    @staticmethod
    def _loader(trainer: L.Trainer):
        loader = trainer.train_dataloader
        return loader if hasattr(loader, "trained") else None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        loader = self._loader(trainer)
        if loader is not None:
            loader.begin_epoch(epoch_in_progress(trainer))

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int
    ) -> None:
        loader = self._loader(trainer)
        if loader is not None:
            loader.trained(batch)


class SkipMonitor(Callback):
    """Count skipped samples per stage; stop with a ``BadDataError`` past ``max_bad_fraction``."""

    def __init__(self, max_bad_fraction: float) -> None:
        self.counters = {stage: SkipCounter(max_bad_fraction, f"{stage} data") for stage in ("train", "val")}

    def _add(self, stage: str, batch: object) -> None:
        if not isinstance(batch, dict):
            return
        counter = self.counters[stage]
        try:
            counter.add(batch_size_of(batch), batch.get(EVENTS, ()), int(batch.get(SHARDS, 0)))
        except DataQualityError as exc:
            raise BadDataError(str(exc)) from None
        if batch.get(EXHAUSTED):
            raise BadDataError(
                f"{batch[EXHAUSTED]} ({counter.summary()}; first: "
                + "; ".join(f"{r}: {f}" for r, f in counter.examples.items())
                + ")"
            )

    def _end(self, stage: str, pl_module: L.LightningModule) -> None:
        counter = self.counters[stage]
        try:
            counter.check()
        except DataQualityError as exc:
            raise BadDataError(str(exc)) from None
        if counter.counts and not pl_module.trainer.sanity_checking:
            pl_module.log(f"data/{stage}_skipped", float(counter.skipped))
            for reason, n in sorted(counter.counts.items()):  # running totals by kind, one row per epoch
                pl_module.log(f"data/{stage}_skipped/{reason}", float(n))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._add("train", batch)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self._add("val", batch)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._end("train", pl_module)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        self._end("val", pl_module)
