"""Position embeddings of a CLIP ViT on a token grid other than the one it was trained on.

Two rules, registered by name (``model.clip.pos_embed``):

- ``resize``: bilinear resampling to the target grid (this project's default since the first version).
- ``lineage``: what the SCLIP lineage's code does (SCLIP ``clip/model.py:263-281``, NACLIP
  ``clip/model.py:134-151``, ClearCLIP ``open_clip/transformer.py:569-587``): bicubic with the scale factor
  (g + 0.1) / g per side (not the size ratio), no antialiasing; and, as there, the embeddings are used
  unchanged whenever the token count equals the trained one, even on a non-square grid of that count.

At the trained grid both return the embeddings unchanged; they differ at 448-pixel windows and whole images.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F


def _split(pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    side = math.isqrt(pos.shape[0] - 1)
    if side * side != pos.shape[0] - 1:
        raise ValueError(f"{pos.shape[0] - 1} patch positions do not form a square grid")
    patch = pos[1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
    return pos[:1], patch, side


def _join(cls_pos: torch.Tensor, patch: torch.Tensor) -> torch.Tensor:
    return torch.cat([cls_pos, patch.permute(0, 2, 3, 1).reshape(-1, patch.shape[1])])


def resized(pos: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Bilinear to the grid's size (align_corners False)."""
    cls_pos, patch, side = _split(pos)
    if (side, side) == tuple(grid):
        return pos
    return _join(cls_pos, F.interpolate(patch, size=tuple(grid), mode="bilinear", align_corners=False))


def lineage(pos: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Bicubic with scale factors ((rows + 0.1) / g, (cols + 0.1) / g), as the SCLIP lineage resizes them."""
    cls_pos, patch, side = _split(pos)
    if grid[0] * grid[1] == side * side:  # the official check compares token counts only
        return pos
    scale = ((grid[0] + 0.1) / side, (grid[1] + 0.1) / side)
    out = F.interpolate(patch, scale_factor=scale, mode="bicubic", align_corners=False,
                        recompute_scale_factor=False)
    if tuple(out.shape[-2:]) != tuple(grid):
        raise ValueError(f"lineage position resampling gave {tuple(out.shape[-2:])} for grid {tuple(grid)}")
    return _join(cls_pos, out)


# model.clip.pos_embed -> f(position embeddings [1 + g*g, width], grid) -> [1 + rows*cols, width]
POSITION_RULES: dict[str, Callable[[torch.Tensor, tuple[int, int]], torch.Tensor]] = {
    "resize": resized,
    "lineage": lineage,
}
