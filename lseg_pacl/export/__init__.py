"""ONNX export of an objective's dense image model (``lseg-pacl export``) and ONNX Runtime inference of it
(``lseg-pacl predict backend=onnx``); docs/evaluation.md#export. onnx and onnxruntime are the optional extra
``pip install -e ".[onnx]"``: nothing here imports them before it is used."""

from lseg_pacl.export.deps import INSTALL, require
from lseg_pacl.export.graph import EXPORTABLE_ROWS, NOT_EXPORTABLE
from lseg_pacl.export.writer import DEFAULT_OPSET, ExportError, export_onnx

__all__ = ["DEFAULT_OPSET", "EXPORTABLE_ROWS", "INSTALL", "NOT_EXPORTABLE", "ExportError", "export_onnx",
           "require"]
