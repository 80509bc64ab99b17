"""Loading a pickle that should hold data only (ADE20K's ``index_ade20k.pkl``) without letting it run code.

A pickle names the callables that rebuild its objects (its "globals"), and plain ``pickle.load`` imports and
calls whatever it names: a file from elsewhere could run ``os.system``. This unpickler resolves only the
globals that numpy arrays and dtypes are rebuilt with (every numpy version's module path, every pickle
protocol); dicts, lists, strings and numbers need none. Any other global is refused with a message naming it,
before anything is called.
"""

from __future__ import annotations

import importlib
import pickle
from pathlib import Path
from typing import Any

import numpy as np

_NUMPY_CORE = ("numpy.core", "numpy._core")  # numpy 1.x writes numpy.core, numpy 2.x numpy._core
ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {(f"{core}.multiarray", name) for core in _NUMPY_CORE for name in ("_reconstruct", "scalar")}
    | {(f"{core}.numeric", "_frombuffer") for core in _NUMPY_CORE}  # protocol 5 arrays
    | {("numpy", "ndarray"), ("numpy", "dtype")}
    | {("_codecs", "encode")}  # protocol 2 stores an array's bytes as a latin-1 string re-encoded by this
)


class RefusedGlobal(pickle.UnpicklingError):
    """The pickle asked for a callable outside ``ALLOWED_GLOBALS``."""


def _resolve(module: str, name: str) -> Any:
    if module.startswith("numpy.core.") and hasattr(np, "_core"):
        module = "numpy._core." + module.removeprefix("numpy.core.")  # numpy 2 (numpy.core is a warning shim)
    elif module.startswith("numpy._core.") and not hasattr(np, "_core"):
        module = "numpy.core." + module.removeprefix("numpy._core.")  # a numpy-2 pickle read under numpy 1
    return getattr(importlib.import_module(module), name)


class DataUnpickler(pickle.Unpickler):
    def __init__(self, file, where: str) -> None:
        super().__init__(file)
        self.where = where

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED_GLOBALS:
            raise RefusedGlobal(
                f"{self.where} asks to call {module}.{name}; refused: this file may hold numpy arrays and "
                f"plain Python data only (a pickle from elsewhere must never run code)"
            )
        return _resolve(module, name)


def load_data_pickle(path: Path) -> Any:
    """The data in ``path``; raises ``RefusedGlobal`` (naming the global) for anything that is not data."""
    with open(path, "rb") as f:
        return DataUnpickler(f, str(path)).load()
