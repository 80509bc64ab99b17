"""The training-free rows, registered by name (``model.clip.last_block``): one module per method, one
experiment each (experiments/baseline_<name>.yaml), presets in experiments/presets/. Adding a method is one
module with a ``TrainingFreeMethod`` subclass and one line here."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from lseg_pacl.methods.base import TrainingFreeMethod
from lseg_pacl.methods.last_blocks import last_block_method
from lseg_pacl.models.last_block import VARIANTS

__all__ = ["METHODS", "TrainingFreeMethod", "build_method", "method_class"]

# name -> the method's class, or "module:Class" imported on first use (methods with heavier dependencies)
METHODS: dict[str, type[TrainingFreeMethod] | str] = {
    **{variant: last_block_method(variant) for variant in VARIANTS},
    "resclip": "lseg_pacl.methods.resclip:ResCLIP",
    "scclip": "lseg_pacl.methods.scclip:SCCLIP",
    "cliptrase": "lseg_pacl.methods.cliptrase:CLIPTrase",
    "pearl": "lseg_pacl.methods.pearl:PEARL",
    "proxyclip": "lseg_pacl.methods.proxyclip:ProxyCLIP",
}


def method_class(name: str) -> type[TrainingFreeMethod]:
    if name not in METHODS:
        raise ValueError(f"unknown training-free method '{name}'; known: {', '.join(METHODS)}")
    entry = METHODS[name]
    if isinstance(entry, str):
        module, _, cls = entry.partition(":")
        entry = METHODS[name] = getattr(importlib.import_module(module), cls)
    return entry


def build_method(name: str, options: Mapping[str, Any] | None = None) -> TrainingFreeMethod:
    return method_class(name)(options)
