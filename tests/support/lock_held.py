"""A dataset that takes a module-level lock in ``__getitem__``, for the DataLoader worker start tests: a
process forked while another of its threads holds that lock inherits it held, forever; a worker started
clean does not."""

import os
import threading
import time

LOCK = threading.Lock()


class NeedsTheLock:
    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> int:
        with LOCK:
            return index


class Sleeps:
    """Item 0 never comes back; each item is the worker's pid."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> int:
        while index == 0:
            time.sleep(3600)
        return os.getpid()


class Dies:
    """The worker process ends at item 0, as a worker killed by the system would."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> int:
        if index == 0:
            os._exit(3)
        return index


class WorkerPid:
    def __len__(self) -> int:
        return 64

    def __getitem__(self, index: int) -> tuple[int, int]:
        return os.getpid(), os.getppid()
