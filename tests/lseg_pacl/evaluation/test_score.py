"""``score``: predicted label PNGs against every benchmark layout, equal to a direct numpy computation."""

import json

import numpy as np
import pytest
from PIL import Image
from support.layouts import (
    make_ade,
    make_ade847,
    make_cityscapes,
    make_coco_object,
    make_coco_stuff,
    make_context,
    make_pc459,
    make_voc,
    write_label_png,
)

from data_modules.segmentation import SegmentationSet
from lseg_pacl.commands.cli import main
from lseg_pacl.evaluation.score import score_folder


def make_one_city(root, n):
    return make_cityscapes(root, cities=("ulm",), per_city=n)


def numpy_miou(preds, targets, c, ignore=255):
    inter, union = np.zeros(c), np.zeros(c)
    for p, t in zip(preds, targets, strict=True):
        valid = t != ignore
        for k in range(c):
            inter[k] += ((p == k) & (t == k) & valid).sum()
            union[k] += (((p == k) | (t == k)) & valid).sum()
    return float(np.nanmean(np.where(union > 0, inter / np.maximum(union, 1), np.nan)))


@pytest.mark.parametrize(("name", "make"), [("ade20k", make_ade), ("voc20", make_voc), ("voc21", make_voc),
                                            ("context59", make_context), ("context60", make_context),
                                            ("coco_stuff171", make_coco_stuff),
                                            ("coco_object", make_coco_object),
                                            ("cityscapes", make_one_city)])
def test_score_matches_numpy_on_each_layout(tmp_path, name, make):
    make(tmp_path, n=3)
    data = SegmentationSet(name, tmp_path, None, transform=None)
    c = len(data.class_names)
    rng = np.random.default_rng(0)
    preds, targets = [], []
    (tmp_path / "pred").mkdir()
    for i, pair in enumerate(data.pairs):
        target = data.load(i).mask
        pred = np.where(rng.random(target.shape) < 0.6, target, rng.integers(0, c, target.shape)).astype(
            np.uint8
        )
        pred[target == 255] = rng.integers(0, c)  # predictions on ignored pixels do not count
        Image.fromarray(pred, mode="L").save(tmp_path / "pred" / f"{pair.image.stem}.png")
        preds.append(pred)
        targets.append(target)
    result = score_folder(name, tmp_path, tmp_path / "pred")
    assert result["mIoU"] == pytest.approx(numpy_miou(preds, targets, c))
    assert result["images"] == 3 and result["problems"] == [] and len(result["per_class"]) == c


def test_missing_and_bad_predictions_are_reported(tmp_path, capsys):
    make_ade(tmp_path, n=3, ids=[1, 2])
    data = SegmentationSet("ade20k", tmp_path, None, transform=None)
    pred_dir = tmp_path / "pred"
    pred_dir.mkdir()
    stems = [p.image.stem for p in data.pairs]
    Image.fromarray(data.load(0).mask, mode="L").save(pred_dir / f"{stems[0]}.png")  # perfect
    Image.fromarray(np.full((5, 5), 1, np.uint8), mode="L").save(pred_dir / f"{stems[1]}.png")  # wrong size
    assert main(["score", "dataset=ade20k", f"root={tmp_path}", f"pred_dir={pred_dir}"]) == 0
    result = json.loads(capsys.readouterr().out)
    reasons = sorted(p["reason"] for p in result["problems"])
    assert reasons == ["missing_prediction", "prediction_size_mismatch"]
    assert result["images"] == 3 and result["skipped"] == 0
    masks = [data.load(i).mask for i in range(3)]  # image 0 perfect; images 1 and 2 count as no prediction
    expected = np.mean([(masks[0] == k).sum() / sum((m == k).sum() for m in masks) for k in (0, 1)])
    assert result["mIoU"] == pytest.approx(expected)
    assert main(["score", "dataset=ade20k", f"root={tmp_path}", f"pred_dir={tmp_path / 'nope'}"]) == 3


def test_bad_predictions_count_as_no_prediction_never_as_skips(tmp_path):
    make_ade(tmp_path, n=2, ids=[1, 2])
    data = SegmentationSet("ade20k", tmp_path, None, transform=None)
    pred_dir = tmp_path / "pred"
    pred_dir.mkdir()
    for pair in data.pairs:
        Image.fromarray(np.full((5, 5), 1, np.uint8), mode="L").save(pred_dir / f"{pair.image.stem}.png")
    result = score_folder("ade20k", tmp_path, pred_dir)
    assert result["images"] == 2 and result["mIoU"] == 0.0 and len(result["problems"]) == 2


@pytest.mark.parametrize(("name", "make"), [("ade847", make_ade847), ("pc459", make_pc459)])
def test_sixteen_bit_predictions_on_the_65535_benchmarks(tmp_path, name, make):
    make(tmp_path, n=3, ids=[0, 255, 256, 65535])
    data = SegmentationSet(name, tmp_path, None, transform=None)
    c = len(data.class_names)
    rng = np.random.default_rng(1)
    preds, targets = [], []
    (tmp_path / "pred").mkdir()
    for i, pair in enumerate(data.pairs):
        target = data.load(i).mask
        pred = np.where(rng.random(target.shape) < 0.6, target, rng.choice([0, 255, 256], target.shape))
        pred[target == 65535] = 255  # predictions on ignored pixels do not count, even of class 255
        if i == 2:
            pred[:2] = 65535  # no prediction
        write_label_png(tmp_path / "pred" / f"{pair.image.stem}.png", pred, mode="I;16")
        preds.append(pred)
        targets.append(target)
    result = score_folder(name, tmp_path, tmp_path / "pred")
    assert result["problems"] == [] and result["images"] == 3 and len(result["per_class"]) == c
    assert result["mIoU"] == pytest.approx(numpy_miou(preds, targets, c, ignore=65535))
    assert 0 < result["per_class"][data.class_names[255]] < 1  # class 255 scored as a class
    write_label_png(tmp_path / "pred" / f"{data.pairs[0].image.stem}.png", np.full((24, 32), c), mode="I;16")
    assert [p["reason"] for p in score_folder(name, tmp_path, tmp_path / "pred")["problems"]] == [
        "prediction_out_of_range"]
