"""Imported only by the DataLoader forkserver (``PRELOAD`` in workers.py): every worker forked from it answers
SIGUSR2 by appending all its threads' Python stacks to ``stacks_file(<forkserver pid>)``, which the trainer's
stall report copies (lseg_pacl/training/stall.py). Importing it anywhere else would take SIGUSR2 over in that
process too."""

from __future__ import annotations

import atexit
import faulthandler
import os
import signal

from data_modules.workers import stacks_file


def _remove(path) -> None:
    """When the forkserver exits (its workers leave by os._exit, without atexit): the stall report has
    copied what it needed."""
    path.unlink(missing_ok=True)


if hasattr(signal, "SIGUSR2"):
    _path = stacks_file(os.getpid())
    _file = open(_path, "a")  # noqa: SIM115 - held open for the handler, as faulthandler needs
    faulthandler.register(signal.SIGUSR2, file=_file, all_threads=True, chain=False)
    atexit.register(_remove, _path)
