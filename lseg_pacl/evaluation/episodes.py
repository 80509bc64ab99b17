"""The few-shot / zero-shot episode metric of LSeg's zero-shot protocol (lang-seg @ bb00b21,
fewshot_data/common/{evaluation,logger}.py = HSNet's).

Per episode (evaluation.py:12-39 ``classify_prediction``): where the target is 255 the prediction is ignored
(it is set to 255 there, and ``histc(bins=2, min=0, max=1)`` counts neither), then for background (0) and
foreground (1): intersection = pixels where prediction == target == k, union = pred_k + gt_k - intersection.
Summed per class over all episodes (logger.py:29-31, ``index_add_`` by ``class_id``) into [2, nclass]:

* mIoU = mean over the fold's classes of fg intersection / max(union, 1) (logger.py:36-40): a fold class with
  no episode counts as IoU 0;
* FB-IoU = mean over {bg, fg} of (sum over the fold's classes of intersections) / (same of unions)
  (logger.py:42-43; not clamped: NaN when nothing was scored, as officially).

Both in percent. The sums are exact int64 pixel counts (the official buffers are float32, which round above
2**24 pixels; the difference is in the 7th significant digit at most). A torchmetrics ``Metric``: the two
count tables are summed across DDP ranks by ``compute``; ``state()`` / ``merge()`` do it by hand.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torchmetrics import Metric

from data_modules.benchmarks import IGNORE_INDEX

__all__ = ["EpisodeMeter", "episode_areas"]


def episode_areas(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(intersection, union), each long [B, 2] (bg, fg), of a batch of episodes (evaluation.py:12-39)."""
    if pred.shape != target.shape or pred.dim() != 3:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must both be [B, H, W]")
    valid = target != IGNORE_INDEX
    if ((target != 0) & (target != 1) & valid).any():
        raise ValueError(f"targets must hold 0, 1 or {IGNORE_INDEX}")
    if ((pred != 0) & (pred != 1) & valid).any():
        raise ValueError("predictions must hold 0 (others) or 1 (the class) where the target is not ignored")
    p1 = (pred == 1) & valid
    p0 = (pred == 0) & valid
    t1 = target == 1
    t0 = target == 0
    inter = torch.stack([(p0 & t0).flatten(1).sum(1), (p1 & t1).flatten(1).sum(1)], 1)
    area_pred = torch.stack([p0.flatten(1).sum(1), p1.flatten(1).sum(1)], 1)
    area_gt = torch.stack([t0.flatten(1).sum(1), t1.flatten(1).sum(1)], 1)
    return inter.long(), (area_pred + area_gt - inter).long()


class EpisodeMeter(Metric):
    """Per-class bg/fg intersection and union of a fold's episodes; ``compute()`` -> {"miou", "fb_iou"}."""

    full_state_update = False
    higher_is_better = True

    def __init__(self, class_ids: Sequence[int], nclass: int, **kwargs) -> None:
        super().__init__(**kwargs)
        ids = [int(c) for c in class_ids]
        if not ids or min(ids) < 0 or max(ids) >= nclass:
            raise ValueError(f"class_ids must be a non-empty subset of 0..{nclass - 1}, got {ids}")
        self.nclass = int(nclass)
        self.register_buffer("class_ids", torch.tensor(ids, dtype=torch.long), persistent=False)
        self.add_state("intersection", torch.zeros(2, nclass, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("union", torch.zeros(2, nclass, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, pred: torch.Tensor, target: torch.Tensor, class_id: torch.Tensor) -> None:
        """``pred``, ``target``: long [B, H, W] (target 255 = ignore); ``class_id``: [B], 0-based."""
        class_id = torch.as_tensor(class_id, device=self.intersection.device).long().reshape(-1)
        if class_id.numel() != pred.shape[0]:
            raise ValueError(f"{class_id.numel()} class ids for {pred.shape[0]} episodes")
        if class_id.numel() and (class_id.min() < 0 or class_id.max() >= self.nclass):
            raise ValueError(f"class ids must be in 0..{self.nclass - 1}")
        inter, union = episode_areas(pred, target)
        self.intersection.index_add_(1, class_id, inter.t().to(self.intersection.device))
        self.union.index_add_(1, class_id, union.t().to(self.union.device))

    def compute(self) -> dict[str, float]:
        """{"miou": ..., "fb_iou": ...} in percent (plain floats; the counts are summed over ranks first)."""
        inter = self.intersection.double().index_select(1, self.class_ids)
        union = self.union.double().index_select(1, self.class_ids)
        iou = inter / union.clamp(min=1)
        miou = iou[1].mean() * 100
        fb_iou = (inter.sum(1) / union.sum(1)).mean() * 100
        return {"miou": float(miou), "fb_iou": float(fb_iou)}

    def per_class(self) -> dict[int, float]:
        """{class id: fg IoU in percent} over the fold's classes (0 for a class without episodes), from the
        counts summed over ranks (as ``compute``)."""
        with self.sync_context():
            iou = self.intersection[1].double() / self.union[1].double().clamp(min=1) * 100
        return {int(c): float(iou[c]) for c in self.class_ids}

    def state(self) -> dict[str, torch.Tensor]:
        """The counts, to be summed across processes (``merge``)."""
        return {"intersection": self.intersection.clone(), "union": self.union.clone()}

    def merge(self, other: EpisodeMeter | Mapping[str, torch.Tensor]) -> None:
        """Add another meter's counts (or a ``state()``) to these."""
        state = other.state() if isinstance(other, EpisodeMeter) else other
        for key in ("intersection", "union"):
            value = torch.as_tensor(state[key])
            if value.shape != (2, self.nclass):
                raise ValueError(f"{key} of shape {tuple(value.shape)}, expected (2, {self.nclass})")
            getattr(self, key).add_(value.to(getattr(self, key)))
        self._update_count += 1  # the counts were updated (torchmetrics warns on compute() otherwise)
