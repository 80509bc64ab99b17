"""Zero-shot segmentation from dense embeddings: per-patch cosine to each class's text embedding."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def zero_shot_logits(dense: torch.Tensor, grid: tuple[int, int], class_embeddings: torch.Tensor,
                     size: tuple[int, int]) -> torch.Tensor:
    """Cosine logits [B, C, H, W] at ``size``: dense [B, T, D] on a ``grid`` (T = gh * gw), classes [C, D].

    The patch-level cosines are bilinearly upsampled (argmax of the result is the prediction).
    """
    b, t, _ = dense.shape
    if t != grid[0] * grid[1]:
        raise ValueError(f"{t} patch embeddings do not fill a {grid[0]}x{grid[1]} grid")
    dtype = torch.promote_types(dense.dtype, torch.float32)  # fp32 under mixed precision; fp64 stays fp64
    with torch.autocast(device_type=dense.device.type, enabled=False):
        cos = F.normalize(dense.to(dtype), dim=-1) @ F.normalize(class_embeddings.to(dtype), dim=-1).t()
        cos = cos.transpose(1, 2).reshape(b, -1, grid[0], grid[1])
        return F.interpolate(cos, size=size, mode="bilinear", align_corners=False)
