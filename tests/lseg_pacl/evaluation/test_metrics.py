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


def test_a_65535_benchmark_counts_class_255_and_ignores_65535():
    """ADE20K-847 / Pascal Context-459: 255 is a class; 65535 is both the ignored target and "no
    prediction"."""
    rng = np.random.default_rng(3)
    c = 300
    preds, targets = [], []
    for _ in range(4):
        t = rng.choice([0, 1, 254, 255, 256, 299], (20, 30))
        t[rng.random(t.shape) < 0.2] = 65535
        p = np.where(rng.random(t.shape) < 0.6, t, rng.choice([0, 255, 256], t.shape))
        p[t == 65535] = rng.choice([0, 255], int((t == 65535).sum()))  # predictions on ignored pixels
        p[rng.random(t.shape) < 0.05] = 65535  # no prediction: a miss
        preds.append(p)
        targets.append(t)
    metric = SegmentationScore(c, ignore_index=65535)
    for p, t in zip(preds, targets, strict=True):
        metric.update(torch.from_numpy(p), torch.from_numpy(t))
    out = report(metric.compute(), [f"c{k}" for k in range(c)])
    inter, union = np.zeros(c), np.zeros(c)
    for p, t in zip(preds, targets, strict=True):
        valid = t != 65535
        for k in range(c):
            inter[k] += ((p == k) & (t == k) & valid).sum()
            union[k] += (((p == k) | (t == k)) & valid).sum()
    iou = np.where(union > 0, inter / np.maximum(union, 1), np.nan)
    assert out["mIoU"] == pytest.approx(np.nanmean(iou))
    assert out["per_class"]["c255"] == pytest.approx(iou[255]) and 0 < out["per_class"]["c255"] < 1
    total = sum((t != 65535).sum() for t in targets)
    assert metric.confusion.sum() == total  # every labelled pixel, class 255's included


def test_the_ignore_index_may_not_be_a_class():
    with pytest.raises(ValueError, match="ignore index 255 is one of the 847 class ids"):
        SegmentationScore(847)
    metric = SegmentationScore(847, ignore_index=65535)
    with pytest.raises(ValueError, match=r"predicted ids \[847\].*65535 = no prediction"):
        metric.update(torch.tensor([[847]]), torch.tensor([[0]]))
    with pytest.raises(ValueError, match="target ids"):
        metric.update(torch.tensor([[0]]), torch.tensor([[847]]))
    small = SegmentationScore(3)  # a 255-benchmark: 255 stays the ignore index and "no prediction"
    small.update(torch.tensor([[255, 0]]), torch.tensor([[0, 255]]))
    assert small.confusion.tolist() == [[0, 0, 0, 1], [0, 0, 0, 0], [0, 0, 0, 0]]
