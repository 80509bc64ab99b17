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


def options_for(name: str, options: Mapping[str, Any] | None) -> dict[str, Any]:
    """The options of method ``name`` in an eval.method_options mapping: its plain keys, with those under
    the method's own name (``method_options.<name>.<key>``) over them; entries under other methods' names are
    theirs. One mapping can so serve several rows evaluated together (``eval models=[...]``)."""
    options = dict(options or {})
    nested = options.get(name)
    if nested is not None and not isinstance(nested, Mapping):
        raise ValueError(f"method_options.{name} must be a mapping of {name}'s options, got {nested!r}")
    return {**{k: v for k, v in options.items() if k not in METHODS}, **(nested or {})}


def build_method(name: str, options: Mapping[str, Any] | None = None) -> TrainingFreeMethod:
    """Method ``name`` with its options taken from ``options`` (``options_for``)."""
    return method_class(name)(options_for(name, options))
