"""``lseg-pacl score``: another program's predictions, scored with this project's metric against a benchmark.

Predictions are label PNGs named like the ground truth (``<stem>.png``), holding the benchmark's contiguous
class ids (255 = no prediction). A missing prediction counts as "no prediction" for its image (never a skip that
would flatter the score); a prediction of the wrong size or with ids outside the classes is a problem and its
image is left out (listed under ``problems``).
"""

from __future__ import annotations

from pathlib import Path

import torch

from data_modules.bad_samples import BadSample
from data_modules.images import read_label_png
from data_modules.segmentation import SegmentationSet
from lseg_pacl.evaluation.metrics import IGNORE_INDEX, SegmentationScore, report


def score_folder(dataset: str, root: str | Path, pred_dir: str | Path, split: str | None = None) -> dict:
    pred_dir = Path(pred_dir).expanduser()
    if not pred_dir.is_dir():
        raise FileNotFoundError(f"prediction folder {pred_dir} does not exist")
    data = SegmentationSet(dataset, root, split, transform=None)
    c = len(data.class_names)
    metric = SegmentationScore(c)
    problems: list[dict] = []
    scored = 0
    for index, pair in enumerate(data.pairs):
        try:
            target = torch.from_numpy(data.load(index).mask.astype("int64"))
        except BadSample as exc:
            problems.append({"file": exc.file, "reason": exc.reason})
            continue
        file = pred_dir / f"{pair.image.stem}.png"
        if not file.is_file():
            problems.append({"file": str(file), "reason": "missing_prediction"})
            metric.update(torch.full_like(target, IGNORE_INDEX), target)
            scored += 1
            continue
        try:
            pred = torch.from_numpy(read_label_png(file))
        except BadSample as exc:
            problems.append({"file": exc.file, "reason": "bad_prediction"})
            continue
        if pred.shape != target.shape:
            problems.append({"file": str(file), "reason": "prediction_size_mismatch"})
            continue
        if ((pred >= c) & (pred != IGNORE_INDEX) | (pred < 0)).any():
            problems.append({"file": str(file), "reason": "prediction_out_of_range"})
            continue
        metric.update(pred, target)
        scored += 1
    return {**report(metric.compute(), data.class_names), "images": scored, "skipped": len(data) - scored,
            "settings": {"pred_dir": str(pred_dir), "split": data.split, "dataset": dataset}, "problems": problems}
