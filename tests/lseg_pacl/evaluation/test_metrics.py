"""The metric against a direct numpy computation of dataset-accumulated IoU."""

import numpy as np
import pytest
import torch

from lseg_pacl.evaluation.metrics import SegmentationScore, report


def numpy_scores(preds, targets, c):
    inter, union = np.zeros(c), np.zeros(c)
    correct = total = 0
    for p, t in zip(preds, targets, strict=True):
        valid = t != 255
        for k in range(c):
            pk, tk = (p == k) & valid, (t == k) & valid
            inter[k] += (pk & tk).sum()
            union[k] += (pk | tk).sum()
        correct += ((p == t) & valid).sum()
        total += valid.sum()
    iou = np.where(union > 0, inter / np.maximum(union, 1), np.nan)
    return np.nanmean(iou), correct / total, iou


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_numpy_over_a_dataset(seed):
    rng = np.random.default_rng(seed)
    c = 7
    preds, targets = [], []
    for _ in range(5):
        h, w = rng.integers(5, 30, 2)
        t = rng.integers(0, c - 2, (h, w))  # classes 5 and 6 never in the ground truth
        t[rng.random((h, w)) < 0.2] = 255
        p = rng.integers(0, c - 1, (h, w))  # class 6 never predicted either: empty union, left out
        p[rng.random((h, w)) < 0.05] = 255  # "no prediction": a miss, never a false positive
        preds.append(p)
        targets.append(t)
    metric = SegmentationScore(c)
    for p, t in zip(preds, targets, strict=True):
        metric.update(torch.from_numpy(p), torch.from_numpy(t))
    out = report(metric.compute(), [f"c{k}" for k in range(c)])
    miou, aacc, iou = numpy_scores(preds, targets, c)
    assert out["mIoU"] == pytest.approx(miou) and out["aAcc"] == pytest.approx(aacc)
    assert out["per_class"]["c6"] is None and out["per_class"]["c5"] == pytest.approx(0.0)
    assert [out["per_class"][f"c{k}"] for k in range(5)] == pytest.approx(iou[:5].tolist())


def test_bad_ids_are_errors_not_silent():
    metric = SegmentationScore(3)
    with pytest.raises(ValueError, match="predicted ids \\[3\\]"):
        metric.update(torch.tensor([[3]]), torch.tensor([[0]]))
    with pytest.raises(ValueError, match="target ids"):
        metric.update(torch.tensor([[0]]), torch.tensor([[4]]))
    with pytest.raises(ValueError, match="shape"):
        metric.update(torch.zeros(2, 2), torch.zeros(2, 3))
