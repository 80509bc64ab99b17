"""Models the fidelity tests compare against transcriptions of official code."""

from __future__ import annotations

import torch

from lseg_pacl.models.clip import ClipBackbone


def perturbed_tiny_clip(pos_embed: str = "lineage") -> ClipBackbone:
    """The 4-block test CLIP (width 128, 4 heads, patch 8, embed 128) in float64, every visual parameter
    perturbed (weights, norms and biases: nothing is zero or one), in eval mode; the same numbers every
    call."""
    torch.manual_seed(0)
    model = ClipBackbone("lseg-tiny-vit", None, pos_embed=pos_embed).double().eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.model.visual.named_parameters():
            scale = 0.3 if "proj" in name or p.ndim > 1 else 0.2
            noise = torch.randn(p.shape, generator=g, dtype=p.dtype) * scale
            p.copy_(p + noise + (0.1 if p.ndim == 1 else 0))
    return model
