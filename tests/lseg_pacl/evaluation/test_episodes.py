"""EpisodeMeter equals a direct numpy computation of HSNet's meter (lang-seg @ bb00b21,
fewshot_data/common/evaluation.py:12-39, logger.py:29-45)."""

import numpy as np
import pytest
import torch

from lseg_pacl.evaluation.episodes import EpisodeMeter, episode_areas


def numpy_reference(preds, targets, class_ids, fold_classes, nclass):
    """Per episode: pixels with target 255 dropped; I_k = #(pred == gt == k), U_k = #pred_k + #gt_k - I_k, for
    k in (bg, fg); summed per class; mIoU = mean over the fold's classes of I_fg / max(U_fg, 1);
    FB-IoU = mean over k of sum_c I_k / sum_c U_k."""
    inter = np.zeros((2, nclass))
    union = np.zeros((2, nclass))
    for p, t, c in zip(preds, targets, class_ids, strict=True):
        keep = t != 255
        p, t = p[keep], t[keep]
        for k in (0, 1):
            i = np.sum((p == k) & (t == k))
            inter[k, c] += i
            union[k, c] += np.sum(p == k) + np.sum(t == k) - i
    fold = list(fold_classes)
    miou = np.mean(inter[1, fold] / np.maximum(union[1, fold], 1)) * 100
    fb = np.mean(inter[:, fold].sum(1) / union[:, fold].sum(1)) * 100
    return miou, fb


def random_batch(rng, b, h, w, classes):
    pred = rng.integers(0, 2, (b, h, w))
    target = (rng.random((b, h, w)) < rng.random((b, 1, 1))).astype(np.int64)
    target[rng.random((b, h, w)) < 0.1] = 255  # ignore pixels
    return pred, target, rng.choice(classes, b)


def test_meter_equals_a_direct_computation():
    rng = np.random.default_rng(0)
    fold = [3, 7, 11, 15, 19]
    seen = fold[:-1]  # class 19 never gets an episode: its IoU counts as 0
    meter = EpisodeMeter(fold, 20)
    preds, targets, ids = [], [], []
    for _ in range(6):
        p, t, c = random_batch(rng, 4, 13, 17, seen)
        meter.update(torch.from_numpy(p), torch.from_numpy(t), torch.from_numpy(c))
        preds += list(p)
        targets += list(t)
        ids += list(c)
    miou, fb = numpy_reference(preds, targets, ids, fold, 20)
    out = meter.compute()
    assert float(out["miou"]) == pytest.approx(miou, abs=1e-9)
    assert float(out["fb_iou"]) == pytest.approx(fb, abs=1e-9)
    # the unseen class pulls mIoU down by a fifth relative to the four seen ones
    miou_seen, _ = numpy_reference(preds, targets, ids, seen, 20)
    assert float(out["miou"]) == pytest.approx(miou_seen * 4 / 5, abs=1e-9)
    per_class = meter.per_class()
    assert list(per_class) == fold and per_class[19] == 0
    assert np.mean(list(per_class.values())) == pytest.approx(out["miou"], abs=1e-9)


def official_classify_prediction(pred_mask, gt_mask, query_ignore_idx=None, ignore_index=255):
    """evaluation.py:12-39, transcribed (float masks, histc)."""
    if query_ignore_idx is not None:
        query_ignore_idx = query_ignore_idx * ignore_index
        gt_mask = gt_mask + query_ignore_idx
        pred_mask[gt_mask == ignore_index] = ignore_index
    area_inter, area_pred, area_gt = [], [], []
    for _pred_mask, _gt_mask in zip(pred_mask, gt_mask, strict=True):
        _inter = _pred_mask[_pred_mask == _gt_mask]
        if _inter.size(0) == 0:
            _area_inter = torch.tensor([0, 0], device=_pred_mask.device)
        else:
            _area_inter = torch.histc(_inter, bins=2, min=0, max=1)
        area_inter.append(_area_inter)
        area_pred.append(torch.histc(_pred_mask, bins=2, min=0, max=1))
        area_gt.append(torch.histc(_gt_mask, bins=2, min=0, max=1))
    area_inter = torch.stack(area_inter).t()
    area_pred = torch.stack(area_pred).t()
    area_gt = torch.stack(area_gt).t()
    return area_inter, area_pred + area_gt - area_inter


def test_areas_equal_the_official_classify_prediction():
    rng = np.random.default_rng(2)
    p, t, _ = random_batch(rng, 5, 9, 11, [0])
    ignore = torch.from_numpy(t == 255).float()
    gt = torch.from_numpy(np.where(t == 255, 0, t)).float()
    inter, union = official_classify_prediction(torch.from_numpy(p).float(), gt, ignore)
    mine = episode_areas(torch.from_numpy(p), torch.from_numpy(t))
    assert torch.equal(mine[0].t(), inter.long()) and torch.equal(mine[1].t(), union.long())


def test_ignored_pixels_do_not_count_whatever_is_predicted():
    target = torch.tensor([[[1, 1, 255, 0]]])
    a = episode_areas(torch.tensor([[[1, 0, 1, 0]]]), target)
    b = episode_areas(torch.tensor([[[1, 0, 0, 0]]]), target)
    assert a[0].tolist() == b[0].tolist() == [[1, 1]]  # bg: pixel 3; fg: pixel 0
    assert a[1].tolist() == b[1].tolist() == [[2, 2]]  # bg: pixels 1, 3; fg: pixels 0, 1


def test_union_is_clamped_and_states_merge_across_ranks():
    rng = np.random.default_rng(1)
    whole = EpisodeMeter([0, 1], 4)
    parts = [EpisodeMeter([0, 1], 4) for _ in range(3)]
    for k in range(6):
        p, t, c = random_batch(rng, 2, 8, 8, [0, 1])
        batch = (torch.from_numpy(p), torch.from_numpy(t), torch.from_numpy(c))
        whole.update(*batch)
        parts[k % 3].update(*batch)
    merged = EpisodeMeter([0, 1], 4)
    merged.merge(parts[0])
    merged.merge(parts[1].state())
    merged.merge({k: v.clone() for k, v in parts[2].state().items()})
    assert merged.compute() == whole.compute()
    assert merged.per_class() == whole.per_class()
    # an episode whose foreground is empty in both prediction and target: union 0 -> clamped to 1, IoU 0
    empty = EpisodeMeter([2], 4)
    empty.update(
        torch.zeros(1, 4, 4, dtype=torch.long), torch.zeros(1, 4, 4, dtype=torch.long), torch.tensor([2])
    )
    out = empty.compute()
    assert float(out["miou"]) == 0.0
    assert np.isnan(float(out["fb_iou"]))  # logger.py:42-43 does not clamp: fg 0 / 0 over the fold


def test_bad_inputs_are_refused():
    meter = EpisodeMeter([0], 2)
    with pytest.raises(ValueError, match="predictions must hold"):
        meter.update(torch.full((1, 2, 2), 2), torch.zeros(1, 2, 2, dtype=torch.long), torch.tensor([0]))
    with pytest.raises(ValueError, match="class ids"):
        meter.update(
            torch.zeros(1, 2, 2, dtype=torch.long), torch.zeros(1, 2, 2, dtype=torch.long), torch.tensor([5])
        )
    with pytest.raises(ValueError, match="subset"):
        EpisodeMeter([3], 2)
