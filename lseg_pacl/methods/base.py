"""What a training-free row is: a change to CLIP's last block(s) that turns one window into per-text logits.

A method says what it reads from the shared trunk (``needs``: block outputs, attention maps of blocks
1..L-1) and computes, from that ``Trunk``, the window itself and the class-text embeddings, the cosine of
every text at the window's pixels. Everything around it (resizing, windows, PAMR, background rules, the
metric) is the protocol's (evaluation/). Hyper-parameters come from ``eval.method_options`` (per benchmark
where a preset says so), checked against the method's ``defaults``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from lseg_pacl.models.clip import ClipBackbone
from lseg_pacl.models.trunk import NOTHING, Needs, Trunk


class TrainingFreeMethod(ABC):
    defaults: ClassVar[dict[str, Any]] = {}  # every option the method takes, with its default

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        unknown = sorted(set(options or {}) - set(self.defaults))
        if unknown:
            known = ", ".join(self.defaults) or "none"
            raise ValueError(f"{type(self).__name__} has no option(s) {unknown}; it takes: {known}")
        self.options = {**self.defaults, **(options or {})}

    def needs(self) -> Needs:
        """The intermediate results of blocks 1..L-1 this method reads (nothing by default)."""
        return NOTHING

    def refine(self, guide: torch.Tensor, logits: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """An image-level step after the windows are merged: per-text cosines [B, len(text), H, W] at the
        image's original size, ``guide`` the resized input brought back to that size (as PAMR's guide).
        Nothing by default; PEARL propagates its logits here, as its official code does per image."""
        return logits

    @property
    def refines(self) -> bool:
        return type(self).refine is not TrainingFreeMethod.refine

    @abstractmethod
    def logits(self, clip: ClipBackbone, trunk: Trunk, image: torch.Tensor, text: torch.Tensor,
               size: tuple[int, int]) -> torch.Tensor:
        """Per-text cosines [B, len(text), *size] for the window ``image`` [B, 3, h, w] (normalised with
        CLIP's statistics, sides whole patches), given ``trunk`` = blocks 1..L-1 on it and unit text
        embeddings [len(text), D]."""
