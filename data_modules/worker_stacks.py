"""Imported only by the DataLoader forkserver (``PRELOAD`` in workers.py): every worker forked from it answers
SIGUSR2 by appending all its threads' Python stacks to ``stacks_file(<forkserver pid>)``, which the trainer's
stall report copies (lseg_pacl/training/stall.py). Importing it anywhere else would take SIGUSR2 over in that
process too."""

from __future__ import annotations

import faulthandler
import os
import signal

from data_modules.workers import stacks_file

if hasattr(signal, "SIGUSR2"):
    _file = open(stacks_file(os.getpid()), "a")  # noqa: SIM115 - held open for the handler, as faulthandler needs
    faulthandler.register(signal.SIGUSR2, file=_file, all_threads=True, chain=False)
