"""``lseg-pacl score``: another program's predictions, scored with this project's metric against a benchmark.

Predictions are label PNGs named like the ground truth (``<stem>.png``), holding the benchmark's contiguous
class ids, the benchmark's ignore index meaning "no prediction" (255; 65535 for ade847 and pc459, whose
predictions need 16-bit PNGs). A missing, unreadable, wrongly sized or out-of-range prediction is listed
under ``problems`` and counts as "no prediction" for its whole image: never a skip that would flatter the
score.
"""

from __future__ import annotations

from pathlib import Path

import torch

from data_modules.bad_samples import BadSample
from data_modules.images import read_label_png
from data_modules.segmentation import SegmentationSet
from lseg_pacl.evaluation.metrics import SegmentationScore, report


def score_folder(dataset: str, root: str | Path, pred_dir: str | Path, split: str | None = None) -> dict:
    pred_dir = Path(pred_dir).expanduser()
    if not pred_dir.is_dir():
        raise FileNotFoundError(f"prediction folder {pred_dir} does not exist")
    data = SegmentationSet(dataset, root, split, transform=None)
    c, none = len(data.class_names), data.ignore_index
    metric = SegmentationScore(c, ignore_index=none)
    problems: list[dict] = []
    scored = 0
    for index, pair in enumerate(data.pairs):
        try:
            target = torch.from_numpy(data.load(index).mask.astype("int64"))
        except BadSample as exc:
            problems.append({"file": exc.file, "reason": exc.reason})
            continue
        file = pred_dir / f"{pair.image.stem}.png"
        problem = None
        pred = None
        if not file.is_file():
            problem = "missing_prediction"
        else:
            try:
                pred = torch.from_numpy(read_label_png(file))
            except BadSample:
                problem = "bad_prediction"
        if pred is not None and pred.shape != target.shape:
            problem, pred = "prediction_size_mismatch", None
        if pred is not None and ((pred >= c) & (pred != none) | (pred < 0)).any():
            problem, pred = "prediction_out_of_range", None
        if problem:
            problems.append({"file": str(file), "reason": problem})
        metric.update(pred if pred is not None else torch.full_like(target, none), target)
        scored += 1
    return {
        **report(metric.compute(), data.class_names),
        "images": scored,
        "skipped": len(data) - scored,
        "settings": {"pred_dir": str(pred_dir), "split": data.split, "dataset": dataset},
        "problems": problems,
    }
