"""The segmentation metric every score in this project comes from (training validation, ``eval``, ``score``).

A confusion matrix summed over the whole dataset, [C, C + 1]: rows are ground-truth classes, columns predicted
classes plus one "no prediction" column (a prediction equal to the ignore index). IoU_c = TP / (TP + FP + FN);
mIoU is the mean over the classes whose union is non-zero (MMSegmentation's convention); aAcc = correct
pixels / labelled pixels. Pixels whose ground truth is the ignore index do not count. The ignore index is the
benchmark's: 255, or 65535 for ade847 and pc459, where 255 is a real class. A torchmetrics ``Metric``, so it
sums across DDP ranks.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchmetrics import Metric

from data_modules.benchmarks import IGNORE_INDEX


class SegmentationScore(Metric):
    full_state_update = False
    higher_is_better = True

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX) -> None:
        super().__init__()
        if 0 <= ignore_index < num_classes:
            raise ValueError(
                f"ignore index {ignore_index} is one of the {num_classes} class ids: pass the benchmark's "
                f"own ignore_index (65535 for the 16-bit benchmarks)"
            )
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.add_state(
            "confusion", torch.zeros(num_classes, num_classes + 1, dtype=torch.long), dist_reduce_fx="sum"
        )

    def update(self, prediction: torch.Tensor, target: torch.Tensor) -> None:
        """``prediction`` and ``target`` of the same shape; predictions in [0, C) or the ignore index (no
        prediction)."""
        if prediction.shape != target.shape:
            raise ValueError(
                f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ in shape"
            )
        c = self.num_classes
        valid = target != self.ignore_index
        t, p = target[valid].long(), prediction[valid].long()
        if t.numel() and (t.min() < 0 or t.max() >= c):
            raise ValueError(
                f"target ids {int(t.min())}..{int(t.max())} outside 0..{c - 1} (and {self.ignore_index})"
            )
        none = p == self.ignore_index
        if ((p < 0) | (p >= c))[~none].any():
            bad = torch.unique(p[~none & ((p < 0) | (p >= c))])[:8].tolist()
            raise ValueError(f"predicted ids {bad} outside 0..{c - 1} ({self.ignore_index} = no prediction)")
        p = torch.where(none, torch.full_like(p, c), p)
        self.confusion += torch.bincount(t * (c + 1) + p, minlength=c * (c + 1)).reshape(c, c + 1)

    def compute(self) -> dict[str, torch.Tensor]:
        return scores_from_confusion(self.confusion)


def scores_from_confusion(confusion: torch.Tensor) -> dict[str, torch.Tensor]:
    """{"iou": [C] (NaN where the union is empty), "mIoU", "aAcc"} from a [C, C + 1] confusion matrix."""
    conf = confusion.double()
    c = conf.shape[0]
    tp = conf[:, :c].diagonal()
    gt = conf.sum(1)  # every labelled pixel of the class (missed ones included)
    predicted = conf[:, :c].sum(0)
    union = gt + predicted - tp
    iou = torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))
    miou = iou.nanmean() if (union > 0).any() else torch.tensor(float("nan"), dtype=torch.float64)
    total = conf.sum()
    aacc = tp.sum() / total if total > 0 else torch.tensor(float("nan"), dtype=torch.float64)
    return {"iou": iou, "mIoU": miou, "aAcc": aacc}


def report(scores: dict[str, torch.Tensor], class_names: Sequence[str]) -> dict:
    """Plain numbers: mIoU, aAcc and per-class IoU by name (null for classes with an empty union)."""

    def num(x: torch.Tensor) -> float | None:
        value = float(x)
        return None if value != value else value

    return {
        "mIoU": num(scores["mIoU"]),
        "aAcc": num(scores["aAcc"]),
        "per_class": {name: num(v) for name, v in zip(class_names, scores["iou"], strict=True)},
    }
