"""DataLoader workers (data_modules/workers.py): never forked from the process that owns the loader, so a
lock another of its threads holds cannot be inherited held; they end with that process; and a worker that
dies is noticed within seconds."""

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from support.lock_held import LOCK, Dies, NeedsTheLock, WorkerPid
from torch.utils.data import DataLoader

from data_modules.workers import WorkerStart, start_method, worker_options


def timed_out(exc: BaseException) -> bool:
    return str(exc).startswith("DataLoader timed out after")


def test_no_workers_no_options_and_workers_start_from_a_forkserver():
    assert worker_options(0) == {}
    options = worker_options(2)
    assert options["multiprocessing_context"].get_start_method() == start_method() == "forkserver"
    assert isinstance(options["worker_init_fn"], WorkerStart)
    assert "timeout" not in options  # it would delay torch's check that the workers live (deadline.py)


@pytest.mark.parametrize("method", ["fork", "project"])
def test_a_lock_held_by_another_thread_hangs_a_forked_worker_but_not_ours(method):
    """The family of the reported hang, made certain: a thread of the training process holds a lock while a
    worker starts; the forked worker inherits it held and never answers (the timeout ends the wait)."""
    release = threading.Event()
    holder = threading.Thread(target=lambda: (LOCK.acquire(), release.wait(), LOCK.release()), daemon=True)
    holder.start()
    while not LOCK.locked():
        time.sleep(0.01)
    options = (  # the timeouts only end the test: the forked worker never answers
        {"multiprocessing_context": multiprocessing.get_context("fork"), "timeout": 5.0}
        if method == "fork" else {**worker_options(1), "timeout": 60.0}
    )
    try:
        loader = DataLoader(NeedsTheLock(), batch_size=None, num_workers=1, **options)
        if method == "fork":
            with pytest.raises(RuntimeError) as caught:
                list(loader)
            assert timed_out(caught.value)
        else:
            assert list(loader) == [0, 1, 2, 3]
    finally:
        release.set()
        holder.join()


def test_a_worker_that_dies_is_noticed_within_seconds():
    """A forkserver worker is not this process's child (no SIGCHLD): torch finds it dead by looking every 5 s,
    which it does only without a DataLoader timeout."""
    loader = DataLoader(Dies(), batch_size=None, num_workers=1, **worker_options(1))
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="exited unexpectedly"):
        list(loader)
    assert time.monotonic() - start < 60


def test_workers_are_the_forkservers_children_not_ours():
    pids = {tuple(int(v) for v in x) for x in DataLoader(WorkerPid(), batch_size=None, num_workers=2,
                                                         **worker_options(2))}
    assert {parent for _, parent in pids} != {os.getpid()}
    assert all(pid != os.getpid() for pid, _ in pids)


OWNER = textwrap.dedent("""
    import sys, time
    sys.path[:0] = sys.argv[1:]
    from torch.utils.data import DataLoader
    from support.lock_held import WorkerPid
    from data_modules.workers import worker_options
    loader = DataLoader(WorkerPid(), batch_size=None, num_workers=1, persistent_workers=True,
                        **worker_options(1))
    pid, _ = next(iter(loader))
    print(pid, flush=True)
    time.sleep(600)
""")


def test_a_worker_ends_when_the_process_that_owns_its_loader_is_killed():
    tests = str(Path(__file__).resolve().parents[1])
    repo = str(Path(__file__).resolve().parents[2])
    owner = subprocess.Popen([sys.executable, "-c", OWNER, tests, repo], stdout=subprocess.PIPE, text=True)
    try:
        worker = int(owner.stdout.readline())
        os.kill(worker, 0)  # alive while its owner is
        owner.kill()
        owner.wait()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                os.kill(worker, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        else:
            os.kill(worker, signal.SIGKILL)
            pytest.fail("the worker outlived the process that owned its loader")
    finally:
        owner.kill()
