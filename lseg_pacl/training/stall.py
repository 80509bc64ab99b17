"""Stalls become stops: a run that stops making progress writes every thread's stack, saves its state where
that state is consistent, and ends with ``Stalled`` (exit code 76), which the SLURM script requeues like a
preemption; ``resume`` continues it exactly.

Three bounded waits (``stall.*``, seconds) turn a stall into an error:

- ``data_timeout``: one batch from the DataLoader;
- ``collective_timeout``: any collective of the process group (``strategy_with_timeout``);
- ``watchdog``: anything else (a training step, a validation batch, the start).

The first and last are kept by a ``Deadline`` (lseg_pacl/deadline.py) that ``StallGuard`` tells what the run
is doing: when a phase runs out it writes the stacks and interrupts the main thread (``StallInterrupt``); a
main thread stuck in C code that never returns to Python is ended by the deadline's thread after a grace
period (``os._exit``).

The state is consistent, and saved (rank 0, without any collective, since another rank may be the one that
stalled), only between training steps: waiting for the next batch, or in the collective at a step's start
(preemption.py). A stall inside a step, in validation or between epochs saves nothing: the newest checkpoint
(written at each validation end and epoch boundary) is where ``resume`` continues.
"""

from __future__ import annotations

import faulthandler
import inspect
import logging
import os
import signal
import sys
import time
from datetime import timedelta
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Callback

from data_modules.ranks import rank
from data_modules.workers import stacks_file
from lseg_pacl.deadline import INTERRUPT, Deadline, StallInterrupt
from lseg_pacl.errors import Stalled
from lseg_pacl.processes import describe, forkserver_workers
from lseg_pacl.training.checkpointing import SaveLast
from lseg_pacl.training.preemption import PreemptionHandler

log = logging.getLogger(__name__)

_COLLECTIVE_FAILURES = ("timed out", "timeout", "connection closed", "connection reset", "broken pipe")


def strategy_with_timeout(name: object, seconds: float | None) -> object:
    """A DDP-family strategy name (``ddp``, ``ddp_spawn``, ...) as that strategy with its process group's
    timeout set, so that every collective waits at most ``seconds``; anything else unchanged."""
    if not seconds or not isinstance(name, str):
        return name
    from lightning.pytorch.strategies import StrategyRegistry

    if name not in StrategyRegistry:
        return name
    cls = StrategyRegistry[name]["strategy"]
    if "timeout" not in inspect.signature(cls.__init__).parameters:
        return name
    params = {**StrategyRegistry[name]["init_params"], "timeout": timedelta(seconds=float(seconds))}
    return cls(**params)


def collective_failed(exc: BaseException) -> bool:
    """A collective that timed out, or whose peer went away (the other rank stopped)."""
    import torch.distributed as dist

    if isinstance(exc, getattr(dist, "DistError", ())):
        return True
    text = str(exc).lower()
    backend = "gloo" in text or "nccl" in text or "collective" in text
    return isinstance(exc, RuntimeError) and backend and any(w in text for w in _COLLECTIVE_FAILURES)


def write_stacks(path: Path, header: str) -> Path:
    """This process's threads (faulthandler), then each DataLoader worker's: its threads' kernel wait channels
    and, asked by SIGUSR2, its Python stacks (data_modules/worker_stacks.py)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"{header}\n\n== this process (pid {os.getpid()}), every thread ==\n")
        f.flush()
        faulthandler.dump_traceback(file=f, all_threads=True)
        for pid in forkserver_workers(os.getpid()):
            f.write(f"\n== DataLoader worker ==\n{describe(pid)}\n")
            source = _worker_stack(pid)
            f.write(source or "  (no Python stack: the worker did not answer SIGUSR2)\n")
    return path


def _worker_stack(pid: int, wait: float = 1.0) -> str:
    """Ask worker ``pid`` for its Python stacks; what it appended to its forkserver's stacks file."""
    try:
        server = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        file = stacks_file(server)
        before = file.stat().st_size if file.exists() else 0
        os.kill(pid, INTERRUPT)
    except (OSError, ValueError, IndexError, TypeError):
        return ""
    time.sleep(wait)
    try:
        with open(file, encoding="utf-8", errors="replace") as f:
            f.seek(before)
            return f.read()
    except OSError:
        return ""


class StallGuard(Callback):
    """Tells the deadline (lseg_pacl/deadline.py) what the run is doing and how long that may take: a batch
    from the DataLoader ``data_timeout``, anything else ``watchdog``; and turns a stall (a phase that ran out,
    a failed collective) into ``stalled``: the message the runner raises as ``Stalled`` once the Trainer has
    returned. Placed first among the callbacks (work begins), with its ``WaitMarker`` last (the wait for
    the next batch begins); the collective of ``preemption`` at a step's start still counts as between
    steps."""

    def __init__(
        self,
        save_last: SaveLast,
        stacks_dir: Path,
        watchdog: float | None,
        data_timeout: float | None,
        where: str,
        preemption: PreemptionHandler | None = None,
    ) -> None:
        self.preemption = preemption
        self.save_last, self.stacks_dir, self.where = save_last, Path(stacks_dir), where
        self.watchdog = float(watchdog) if watchdog else None
        self.data_timeout = float(data_timeout) if data_timeout else None
        self.stalled: Stalled | None = None
        self._between_steps = False  # the state is that of a whole number of steps (see the module doc)
        self._before_validation = False
        self._stacks: Path | None = None  # where this rank's stacks were written
        grace = min(120.0, max(10.0, self.watchdog or self.data_timeout or 0.0))
        self.deadline = Deadline(self._record, self._hard_exit, grace)

    # ------------------------------------------------------------------------------------------ phases

    def _working(self, phase: str) -> None:
        self.deadline.beat(phase, self.watchdog, "stall.watchdog")

    def _waiting(self, phase: str) -> None:
        """Waiting for a batch from the DataLoader."""
        if self.data_timeout:
            self.deadline.beat(phase, self.data_timeout, "stall.data_timeout")
        else:
            self._working(phase)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._working(f"{getattr(stage, 'value', stage)}: starting")
        if self.watchdog or self.data_timeout:
            self.deadline.start()

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.stalled is None:
            self.stop()

    def stop(self) -> None:
        """The Trainer returned: the deadline's thread ends (after a stall, once the runner has raised)."""
        self.deadline.stop()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._between_steps = False
        self._working(f"training step {trainer.global_step}")

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._between_steps = False
        self._working("training: the end of an epoch")

    def on_validation_start(self, trainer, pl_module) -> None:
        self._before_validation, self._between_steps = self._between_steps, False
        self._working("validation: starting")

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self._working(f"validation (batch {batch_idx} of loader {dataloader_idx})")

    def on_validation_end(self, trainer, pl_module) -> None:
        self._between_steps = self._before_validation
        self._working("validation: ending (saving checkpoints)")

    # ------------------------------------------------------------------------------------------ stalls

    def _record(self, reason: str) -> Path:
        """This rank's stacks, written once (by the deadline's thread or by the main thread)."""
        if self._stacks is None:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            header = f"rank {rank()} stalled in {self.where}, {self.deadline.phase}: {reason}"
            self._stacks = write_stacks(self.stacks_dir / f"{stamp}-rank{rank()}.txt", header)
            log.error("rank %d stalled (%s); stacks in %s", rank(), reason, self._stacks)
        return self._stacks

    def _hard_exit(self, why: str) -> None:
        """The main thread never came back: end the process here (the newest checkpoint stands)."""
        for pid in forkserver_workers(os.getpid()):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        message = (
            f"error: rank {rank()} stalled in {self.where}, {self.deadline.phase}: {why}; the main thread "
            f"did not come back. Stacks: {self._stacks or self.stacks_dir}. Nothing was saved now; resume "
            f"continues from the newest checkpoint in {self.save_last.directory}."
        )
        print(message, file=sys.stderr, flush=True)
        os._exit(Stalled.exit_code)

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        if self.deadline.fired is not None or isinstance(exception, StallInterrupt):
            # whatever the interrupt broke on its way (a write it cut short, say) is this stall
            reason = self.deadline.fired or str(exception)
        elif collective_failed(exception):
            reason = f"a collective failed: {str(exception).splitlines()[0][:300]} (stall.collective_timeout)"
        else:
            return
        stacks = self._record(reason)
        saved = self._save_if_consistent(trainer)
        self.deadline.end_by()  # for the rest of the stop (teardown, loggers)
        self.stalled = Stalled(
            f"rank {rank()} stalled in {self.where}, {self.deadline.phase}: {reason}. Stacks: {stacks}. "
            f"{saved} Continue with resume={self.save_last.directory.parent} (or resume=auto)."
        )

    def _save_if_consistent(self, trainer: L.Trainer) -> str:
        between = self._between_steps or (self.preemption is not None and self.preemption.checking)
        if not between or trainer.state.fn != "fit" or trainer.global_step == 0:
            return f"The state was not between steps: resume continues from the newest checkpoint in " \
                   f"{self.save_last.directory}."
        if rank() != 0:
            return f"Rank 0 writes the checkpoints: resume continues from the newest in " \
                   f"{self.save_last.directory}."
        try:
            self.save_last.save_here(trainer)
        except Exception as exc:  # noqa: BLE001 - the stop goes on; the older checkpoints stand
            return f"Saving the state failed ({exc}); the older checkpoints stand."
        return f"The state at step {trainer.global_step} is saved in {self.save_last.path}."


class WaitMarker(Callback):
    """The other half of ``StallGuard``, placed last among the callbacks: when every other hook of a step or
    a batch has run, what follows is the wait for the next batch (bounded by stall.data_timeout)."""

    def __init__(self, guard: StallGuard) -> None:
        self.guard = guard

    # The first batch of a loader also waits for its workers to start: work, bounded by the watchdog.
    def on_train_start(self, trainer, pl_module) -> None:
        self.guard._working("training: starting the workers, waiting for the first batch")

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.guard._working(f"training: waiting for the first batch of epoch {trainer.current_epoch}")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.guard._between_steps = trainer.state.fn == "fit" and not trainer.sanity_checking
        self.guard._waiting(f"training: waiting for the batch of step {trainer.global_step}")

    def on_validation_start(self, trainer, pl_module) -> None:
        self.guard._working("validation: starting the workers, waiting for the first batch")

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        self.guard._waiting(f"validation: waiting for the batch after {batch_idx} of loader {dataloader_idx}")

    def on_validation_end(self, trainer, pl_module) -> None:
        self.guard._waiting("training: waiting for the next batch")
