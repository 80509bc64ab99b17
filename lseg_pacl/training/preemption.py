"""Preemption: SIGTERM (a scheduler's kill notice) or SIGUSR1 (SLURM's ``--signal``) only sets a flag; at the
next training step boundary (before the next batch) every rank learns whether any rank got one (a max over
ranks), all save the state together (last.ckpt, checkpointing.py) and the run stops with ``Preempted`` (exit
code 75). ``resume=DIR`` or ``resume=auto`` continues it exactly where it stopped.

Nothing happens inside the signal handler itself (no collective, no I/O): Lightning's own SIGTERM handler,
which broadcasts from inside the handler and exits without saving, is replaced while training runs.
"""

from __future__ import annotations

import logging
import signal
import threading

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from data_modules.ranks import distributed
from lseg_pacl.errors import Preempted
from lseg_pacl.training.checkpointing import SaveLast

log = logging.getLogger(__name__)

SIGNALS = tuple(
    s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGUSR1", None)) if s is not None
)


class PreemptionHandler(Callback):
    def __init__(self, save_last: SaveLast) -> None:
        self.save_last = save_last
        self.received: int | None = None
        self.checking = False  # in the collective that opens a step: still between steps (training/stall.py)
        self._previous: dict[int, object] = {}

    def _on_signal(self, signum: int, frame) -> None:
        self.received = signum

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signals can only be handled on the main thread
        for sig in SIGNALS:
            self._previous[sig] = signal.signal(sig, self._on_signal)

    def _restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore()

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self._restore()

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int
    ) -> None:
        """Checked before each step (not after: at a batch's end Lightning's counters are mid-update, and a
        resume from there would repeat or skip data); the fetched batch is trained on after the resume."""
        if batch_idx % max(1, trainer.accumulate_grad_batches):
            return  # mid-accumulation: the gradients gathered so far are not in a checkpoint
        flag = torch.tensor([0.0 if self.received is None else 1.0], device=pl_module.device)
        if distributed():
            self.checking = True
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            self.checking = False
        if flag.item() == 0.0:
            return
        name = signal.Signals(self.received).name if self.received is not None else "a signal on another rank"
        log.warning("%s received: saving the state at step %d and stopping", name, trainer.global_step)
        self.save_last.save(trainer)
        raise Preempted(
            f"stopped by {name} at step {trainer.global_step}; the state is saved in "
            f"{self.save_last.path}. Continue with resume={self.save_last.directory.parent} "
            f"(or resume=auto with the same run.id / run.dir)"
        )
