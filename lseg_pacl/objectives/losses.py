"""Contrastive (InfoNCE) loss, symmetric, with optional several positives per row or column."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over rows of -sum_j q_ij log softmax(logits)_ij with q the row-normalised positives."""
    weights = targets / targets.sum(dim=1, keepdim=True)
    return -(weights * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def contrastive_loss(logits: torch.Tensor, positives: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric InfoNCE: the mean of the image->text and text->image cross-entropies.

    logits: [Bi, Bt] (already multiplied by the logit scale). positives: [Bi, Bt] booleans; None means the
    diagonal (image i goes with text i), which is CLIP's loss. Every row and column needs one positive.
    """
    logits = logits.float()
    if positives is None:
        if logits.shape[0] != logits.shape[1]:
            raise ValueError(
                f"without explicit positives the logits must be square, got {tuple(logits.shape)}"
            )
        labels = torch.arange(logits.shape[0], device=logits.device)
        return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels))
    positives = positives.to(device=logits.device, dtype=logits.dtype)
    if (positives.sum(1) == 0).any() or (positives.sum(0) == 0).any():
        raise ValueError("every image and every text needs at least one positive")
    return 0.5 * (_soft_cross_entropy(logits, positives) + _soft_cross_entropy(logits.t(), positives.t()))
