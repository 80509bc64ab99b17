"""The optional dependencies of ONNX export and ONNX Runtime inference (``pip install -e ".[onnx]"``)."""

from __future__ import annotations

import importlib

from lseg_pacl.errors import MissingInputError

INSTALL = 'pip install -e ".[onnx]"'


def require(*modules: str, what: str = "ONNX export") -> None:
    """Import ``modules`` (default: onnx and onnxruntime) or stop with the command that installs them."""
    missing = []
    for name in modules or ("onnx", "onnxruntime"):
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise MissingInputError(f"{what} needs {' and '.join(missing)}, which are not installed: {INSTALL}")


def onnxruntime():
    """The onnxruntime module, or the install message."""
    require("onnxruntime", what="ONNX Runtime inference (backend=onnx)")
    return importlib.import_module("onnxruntime")
