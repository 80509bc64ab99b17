"""The LSeg network (docs/methods.md#lseg): DPT pixel embeddings against label embeddings from a frozen CLIP
text encoder. Both are L2-normalised; logits = scale x cosine at half resolution, optionally spatially
regularised, then bilinearly upsampled (align_corners=True) to the requested size. Any label list, any length.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lseg_pacl.models.dpt import DPT
from lseg_pacl.models.spatial_reg import SpatialRegularization


class LSegNet(nn.Module):
    def __init__(
        self,
        backbone: str,
        backbone_pretrained: str | None,
        text_dim: int,
        features: int = 256,
        spatial_reg: str = "none",
        block_depth: int = 2,
        activation: str = "lrelu",
        logit_scale: float = 1 / 0.07,
        learn_logit_scale: bool = False,
    ) -> None:
        super().__init__()
        self.dpt = DPT(backbone, backbone_pretrained, features=features, out_dim=text_dim)
        self.spatial = SpatialRegularization(spatial_reg, block_depth, activation)
        self.log_scale = nn.Parameter(torch.tensor(math.log(logit_scale)), requires_grad=learn_logit_scale)

    @property
    def patch_size(self) -> int:
        return self.dpt.patch_size

    def pixel_embeddings(self, images: torch.Tensor) -> torch.Tensor:
        """Unit per-pixel embeddings [B, D, H/2, W/2] in the text encoder's space (at least fp32)."""
        pixels = self.dpt(images)
        return F.normalize(pixels.to(torch.promote_types(pixels.dtype, torch.float32)), dim=1)

    def forward(
        self, images: torch.Tensor, label_embeddings: torch.Tensor, size: tuple[int, int] | None = None
    ) -> torch.Tensor:
        """Logits [B, N, *size] (default: the input size) for unit label embeddings [N, D] shared by the
        batch, or [B, N, D], each image its own (a zero-shot episode's ["others", class])."""
        pixels = self.pixel_embeddings(images)
        with torch.autocast(device_type=pixels.device.type, enabled=False):  # cosines and logits in fp32+
            labels = F.normalize(label_embeddings.to(pixels.dtype), dim=-1)
            pattern = "bdhw,nd->bnhw" if labels.dim() == 2 else "bdhw,bnd->bnhw"
            logits = self.log_scale.to(pixels.dtype).exp() * torch.einsum(pattern, pixels, labels)
            logits = self.spatial(logits)
            return F.interpolate(
                logits, size=size or tuple(images.shape[-2:]), mode="bilinear", align_corners=True
            )
