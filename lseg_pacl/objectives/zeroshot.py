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
    with torch.autocast(
        device_type=dense.device.type, enabled=False
    ):  # cosines in fp32 under mixed precision
        cos = (
            F.normalize(dense.float(), dim=-1) @ F.normalize(class_embeddings.float(), dim=-1).t()
        )  # [B, T, C]
        cos = cos.transpose(1, 2).reshape(b, -1, grid[0], grid[1])
        return F.interpolate(cos, size=size, mode="bilinear", align_corners=False)
