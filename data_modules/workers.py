"""How every DataLoader of the project starts its worker processes, and how long it waits for a batch.

Workers are never forked from the training process itself. By the time a DataLoader starts its workers that
process runs other threads (the process group's, W&B's, the progress bar's, the intra-op pool's, the feeder
threads of other loaders' queues), and a child forked while one of them holds a lock inherits the lock held
forever: the worker blocks in its first moments and the run waits for it without end (see docs/training.md,
"Stalls"). Workers start from a forkserver instead: a fresh single-threaded process that imports the data
modules once and forks each worker from itself (spawn where there is no forkserver). The dataset and the
collate function travel to each worker by pickle, so both must be picklable (module-level functions, no
lambdas).

A worker started so has the forkserver for parent, and torch's own check that its parent lives would then
watch the forkserver: ``WorkerStart`` (every loader's ``worker_init_fn``) makes each worker end with the
process that owns its loader instead, and seeds it as Lightning's own worker_init_fn would have.

How long a batch may take is bounded by the process that waits for it (lseg_pacl/deadline.py), not by the
DataLoader's own ``timeout``, which would also delay torch's check that the workers still live.
"""

from __future__ import annotations

import multiprocessing
import os
import select
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from data_modules.ranks import place

# What the forkserver imports once, before it forks any worker (each worker then starts in milliseconds).
PRELOAD = [
    "torch",
    "numpy",
    "PIL.Image",
    "cv2",
    "albumentations",
    "data_modules.segmentation",
    "data_modules.captions",
    "data_modules.shards",
    "data_modules.check",
    "data_modules.worker_stacks",  # workers answer SIGUSR2 with their stacks (the stall report)
]
_preloaded = False


def stacks_file(server_pid: int) -> Path:
    """Where the workers of forkserver ``server_pid`` append their stacks on SIGUSR2 (worker_stacks.py)."""
    return Path(tempfile.gettempdir()) / f"lseg_pacl-worker-stacks-{server_pid}.txt"


def start_method() -> str:
    """forkserver where the platform has it (Linux, macOS), else spawn (Windows)."""
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def _exit_with(owner: int) -> None:
    """End this worker as soon as process ``owner`` has ended (a thread waiting on its pidfd, or polling)."""

    def wait() -> None:
        try:
            fd = os.pidfd_open(owner)
            select.select([fd], [], [])  # readable once the process has exited
        except (AttributeError, OSError):
            while True:
                try:
                    os.kill(owner, 0)
                except ProcessLookupError:
                    break
                except PermissionError:
                    pass
                time.sleep(2.0)
        os._exit(0)

    threading.Thread(target=wait, name="owner-watch", daemon=True).start()


class WorkerStart:
    """The ``worker_init_fn`` of every loader: the worker ends with the loader's process (not with the
    forkserver, its parent), then is seeded as Lightning's ``pl_worker_init_function`` would seed it when
    ``seed_everything(workers=True)`` asked for that (Lightning adds its own only where there is none)."""

    def __init__(self) -> None:
        self.owner, self.rank = os.getpid(), place()[0]
        self.seed_workers = bool(int(os.environ.get("PL_SEED_WORKERS", "0") or 0))

    def __call__(self, worker_id: int) -> None:
        _exit_with(self.owner)
        if self.seed_workers:
            from lightning.fabric.utilities.seed import pl_worker_init_function

            pl_worker_init_function(worker_id, rank=self.rank)


def worker_options(num_workers: int) -> dict[str, Any]:
    """The DataLoader arguments for ``num_workers`` workers: how they start and what each runs first.
    Nothing for ``num_workers == 0`` (batches are made in this process)."""
    global _preloaded
    if num_workers <= 0:
        return {}
    method = start_method()
    if method == "forkserver" and not _preloaded:
        multiprocessing.set_forkserver_preload(PRELOAD)  # read when the forkserver first starts
        _preloaded = True
    return {
        "multiprocessing_context": multiprocessing.get_context(method),
        "worker_init_fn": WorkerStart(),
    }
