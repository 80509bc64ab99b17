"""The rows that change CLIP's last block only (CLIP itself, MaskCLIP, SCLIP, ClearCLIP, NACLIP;
models/last_block.py): the block's patch tokens through ln_post and the projection, cosine to each text,
bilinear to the window."""

from __future__ import annotations

import torch

from lseg_pacl.methods.base import TrainingFreeMethod
from lseg_pacl.models.clip import ClipBackbone
from lseg_pacl.models.last_block import final_block
from lseg_pacl.models.trunk import Trunk
from lseg_pacl.models.zeroshot import zero_shot_logits


class LastBlockMethod(TrainingFreeMethod):
    variant = "plain"

    def logits(self, clip: ClipBackbone, trunk: Trunk, image: torch.Tensor, text: torch.Tensor,
               size: tuple[int, int]) -> torch.Tensor:
        visual = clip.model.visual
        tokens = visual.ln_post(final_block(visual.transformer, trunk.x, self.variant, trunk.grid))
        return zero_shot_logits(clip.project(tokens[:, 1:]), trunk.grid, text, size)


def last_block_method(variant: str) -> type[LastBlockMethod]:
    return type(f"LastBlock_{variant}", (LastBlockMethod,), {"variant": variant})
