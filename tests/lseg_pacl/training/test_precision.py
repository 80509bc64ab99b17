"""bf16-mixed trains every objective with finite losses (CPU here; 16-mixed on CPU is bf16, see pitfalls)."""

import csv
import math
from pathlib import Path

import pytest

from lseg_pacl.training.runner import train


@pytest.mark.slow
@pytest.mark.parametrize("experiment", ["demo_clip", "demo_pacl", "lseg_demo_seg"])
def test_bf16_mixed_losses_stay_finite(experiment, tiny):
    summary = train(experiment, [*tiny, "model.clip.pretrained=null", "trainer.precision=bf16-mixed"])
    with open(Path(summary["run_dir"]) / "metrics.csv", newline="") as f:
        losses = [float(r["train/loss"]) for r in csv.DictReader(f) if r.get("train/loss")]
    assert len(losses) == 4 and all(math.isfinite(x) for x in losses)
