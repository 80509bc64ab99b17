"""``lseg-pacl export``: a model's dense image model as ONNX, its label embeddings and the rules that make
logits of them (lseg_pacl/export/, docs/evaluation.md#export)."""

from __future__ import annotations

from collections.abc import Callable

from lseg_pacl.commands.options import key_values
from lseg_pacl.errors import ConfigError

FORMATS = ("onnx",)
OWN = {"ckpt": str, "format": str, "labels": str, "out": str, "opset": int, "overwrite": bool}


def export_command(words: list[str], shortcuts: Callable[[list[str]], list[str]] = lambda w: w) -> dict:
    """Parse ``key=value`` words: this command's own (``OWN``); the rest are config overrides as predict
    takes them (``mode=...`` meaning ``eval.mode=...``)."""
    mine = [w for w in words if w.partition("=")[0] in OWN]
    opts = key_values(mine, OWN)
    missing = [k for k in ("ckpt", "out") if k not in opts]
    if missing:
        raise ConfigError(f"export needs {', '.join(f'{k}=...' for k in missing)} (e.g. "
                          f'ckpt=runs/.../last.ckpt format=onnx labels="cat, grass, other" out=exports/mine)')
    fmt = opts.get("format", "onnx")
    if fmt not in FORMATS:
        raise ConfigError(f"format={fmt}: the formats are {', '.join(FORMATS)}")
    from lseg_pacl.export import DEFAULT_OPSET, export_onnx

    rest = shortcuts([w for w in words if w not in mine])
    return export_onnx(opts["ckpt"], opts["out"], opts.get("labels"), opts.get("opset", DEFAULT_OPSET),
                       opts.get("overwrite", False), rest)
