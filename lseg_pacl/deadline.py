"""A bound on how long the main thread may go without progress, kept by a thread of its own: the one way
training (training/stall.py) and evaluation (evaluation/evaluator.py) turn a wait without end into a stop.

``beat(phase, limit)`` says what the main thread is doing now and how long that may take (seconds; None: no
bound). When a phase outlasts its limit, the thread calls ``on_stall(reason)`` (write the stacks), then
interrupts the main thread with SIGUSR2, whose handler raises ``StallInterrupt`` where the main thread is. If
the process has not ended ``grace`` seconds later (a main thread stuck in C code never runs the handler), the
thread calls ``hard_exit(reason)``, which must end the process.

DataLoader waits are bounded here rather than by the DataLoader's own ``timeout``: with a timeout, torch waits
that long in one piece before it looks whether its workers still live, so a worker that died would be noticed
only at the timeout; without one it looks every 5 s (data_modules/workers.py).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable

INTERRUPT = getattr(signal, "SIGUSR2", None)


class StallInterrupt(BaseException):
    """Raised in the main thread when its phase outlasted its limit; a BaseException, so that no
    ``except Exception`` on the way (a dataset's bad-sample handling, say) takes it for a bad sample."""


class Deadline:
    def __init__(
        self, on_stall: Callable[[str], None], hard_exit: Callable[[str], None], grace: float = 60.0
    ) -> None:
        self.on_stall, self.hard_exit, self.grace = on_stall, hard_exit, grace
        self.phase, self.fired = "starting", None  # fired: why it fired (None: it has not)
        self._since, self._limit, self._key = time.monotonic(), None, ""
        self._end_by: float | None = None
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._previous = None

    def beat(self, phase: str, limit: float | None, key: str = "") -> None:
        """The main thread starts ``phase``, which may last ``limit`` seconds (``key``: the setting that says
        so, for the message)."""
        self.phase, self._since, self._limit, self._key = phase, time.monotonic(), limit, key

    def end_by(self, seconds: float | None = None) -> None:
        """A stop is under way: the process must have ended ``seconds`` (default ``grace``) from now."""
        self._end_by = time.monotonic() + (self.grace if seconds is None else seconds)

    def start(self) -> None:
        self._done.clear()
        if INTERRUPT is not None and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(INTERRUPT, self._interrupted)
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="stall-deadline", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._previous is not None and threading.current_thread() is threading.main_thread():
            signal.signal(INTERRUPT, self._previous)
            self._previous = None

    def _interrupted(self, signum, frame) -> None:
        raise StallInterrupt(self.fired or "a bounded wait ran out")

    def _watch(self) -> None:
        while not self._done.wait(0.5):
            now = time.monotonic()
            if self._end_by is not None and now > self._end_by:
                self.hard_exit(self.fired or "the stop did not finish in time")
            limit = self._limit
            if self.fired is None and limit and now - self._since > limit:
                self.fired = f"no progress for {now - self._since:.0f} s in {self.phase} ({self._key})"
                self.on_stall(self.fired)
                self.end_by()
                if INTERRUPT is not None:
                    signal.pthread_kill(threading.main_thread().ident, INTERRUPT)
