"""Stalls become stops: a run that stops making progress writes every thread's stack, saves its state where
that state is consistent, and ends with ``Stalled`` (exit code 76), which the SLURM script requeues like a
preemption; ``resume`` continues it exactly.

Three bounded waits (``stall.*``, seconds) turn a stall into an error:

- ``data_timeout``: one batch from a DataLoader worker (data_modules/workers.py);
- ``collective_timeout``: any collective of the process group (``strategy_with_timeout``);
- ``watchdog``: no training step and no validation batch at all. A thread of ``StallGuard`` notices, writes
  the stacks and interrupts the main thread (SIGUSR2, whose handler raises ``StallInterrupt``); a main
  thread stuck in C code that never returns to Python is ended by the thread itself after a grace period
  (``os._exit``).

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
import threading
import time
from datetime import timedelta
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Callback

from data_modules.ranks import rank
from data_modules.workers import stacks_file, timed_out
from lseg_pacl.errors import Stalled
from lseg_pacl.processes import describe, forkserver_workers
from lseg_pacl.training.checkpointing import SaveLast

log = logging.getLogger(__name__)

INTERRUPT = getattr(signal, "SIGUSR2", None)


class StallInterrupt(BaseException):
    """Raised in the main thread by the watchdog's signal; a BaseException, so that no ``except Exception``
    on the way (a dataset's bad-sample handling, say) can take it for a bad sample and carry on."""


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
    """Keeps the heartbeat (training steps, validation batches), runs the watchdog thread, and turns a stall
    (watchdog, DataLoader timeout, failed collective) into ``stalled``: the message the runner raises as
    ``Stalled`` once the Trainer has returned. Placed after ``PreemptionHandler``, whose collective at a
    step's start still counts as between steps."""

    def __init__(self, save_last: SaveLast, stacks_dir: Path, watchdog: float | None, where: str) -> None:
        self.save_last, self.stacks_dir, self.where = save_last, Path(stacks_dir), where
        self.watchdog = float(watchdog) if watchdog else None
        self.grace = min(120.0, max(10.0, self.watchdog or 0.0))
        self.stalled: Stalled | None = None
        self._beat = time.monotonic()
        self._phase = "starting"
        self._between_steps = False  # the state is that of a whole number of steps (see the module doc)
        self._before_validation = False
        self._fired: str | None = None  # why the watchdog fired
        self._stacks: Path | None = None  # where this rank's stacks were written
        self._deadline: float | None = None  # after a stall: the process ends by then, whatever happens
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._previous_handler = None

    # ------------------------------------------------------------------------------------------ heartbeat

    def _progress(self, phase: str) -> None:
        self._beat, self._phase = time.monotonic(), phase

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._progress(f"{getattr(stage, 'value', stage)}: starting")
        self._done.clear()
        if self.watchdog and threading.current_thread() is threading.main_thread() and INTERRUPT:
            self._previous_handler = signal.signal(INTERRUPT, self._interrupted)
        if self.watchdog and self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="stall-watchdog", daemon=True)
            self._thread.start()

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.stalled is None:
            self.stop()

    def stop(self) -> None:
        """The Trainer returned: the watchdog ends (after a stall, once the runner has raised)."""
        self._done.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._previous_handler is not None and threading.current_thread() is threading.main_thread():
            signal.signal(INTERRUPT, self._previous_handler)
            self._previous_handler = None

    def on_train_start(self, trainer, pl_module) -> None:
        self._progress("training: waiting for the first batch")

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._between_steps = False
        self._progress(f"training step {trainer.global_step}")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._between_steps = trainer.state.fn == "fit" and not trainer.sanity_checking
        self._progress(f"training: waiting for the batch of step {trainer.global_step}")

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._between_steps = False

    def on_validation_start(self, trainer, pl_module) -> None:
        self._before_validation, self._between_steps = self._between_steps, False
        self._progress("validation")

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        self._progress(f"validation (after batch {batch_idx} of loader {dataloader_idx})")

    def on_validation_end(self, trainer, pl_module) -> None:
        self._between_steps = self._before_validation
        self._progress("training: waiting for the next batch")

    # ------------------------------------------------------------------------------------------ stalls

    def _interrupted(self, signum, frame) -> None:
        raise StallInterrupt(f"no progress for {self.watchdog:.0f} s (stall.watchdog)")

    def _watch(self) -> None:
        while not self._done.wait(min(2.0, max(0.2, (self.watchdog or 8) / 8))):
            now = time.monotonic()
            if self._deadline is not None and now > self._deadline:
                self._hard_exit("the stop after the stall did not finish in time")
            if self._fired is None and now - self._beat > self.watchdog:
                self._fired = f"no progress for {now - self._beat:.0f} s in {self._phase} (stall.watchdog)"
                self._record(self._fired)
                self._deadline = time.monotonic() + self.grace
                if INTERRUPT is not None:
                    signal.pthread_kill(threading.main_thread().ident, INTERRUPT)

    def _record(self, reason: str) -> Path:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = self.stacks_dir / f"{stamp}-rank{rank()}.txt"
        if self._stacks is None:
            header = f"rank {rank()} stalled in {self.where}, {self._phase}: {reason}"
            self._stacks = write_stacks(path, header)
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
            f"error: rank {rank()} stalled in {self.where}, {self._phase} ({self._fired or why}); {why}. "
            f"Stacks: {self._stacks or self.stacks_dir}. Nothing was saved now; resume continues "
            f"from the newest checkpoint in {self.save_last.directory}."
        )
        print(message, file=sys.stderr, flush=True)
        os._exit(Stalled.exit_code)

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        if isinstance(exception, StallInterrupt):
            reason = self._fired or str(exception)
        elif timed_out(exception):
            reason = f"{exception} (stall.data_timeout)"
        elif collective_failed(exception):
            reason = f"a collective failed: {str(exception).splitlines()[0][:300]} (stall.collective_timeout)"
        else:
            return
        stacks = self._record(reason)
        saved = self._save_if_consistent(trainer)
        self._deadline = time.monotonic() + self.grace  # for the rest of the stop (teardown, loggers)
        self.stalled = Stalled(
            f"rank {rank()} stalled in {self.where}, {self._phase}: {reason}. Stacks: {stacks}. {saved} "
            f"Continue with resume={self.save_last.directory.parent} (or resume=auto)."
        )

    def _save_if_consistent(self, trainer: L.Trainer) -> str:
        if not self._between_steps or trainer.state.fn != "fit" or trainer.global_step == 0:
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
