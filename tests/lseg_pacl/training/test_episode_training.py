"""LSeg's zero-shot training end to end on the small synthetic world: episodes of the seen classes of
data.fold, validated on the unseen ones, then `eval` scoring the checkpoint at other folds beside a dense
benchmark."""

import json
from pathlib import Path

import pytest

from lseg_pacl.commands.cli import main
from lseg_pacl.training.runner import train


@pytest.mark.slow
def test_episode_training_validates_and_eval_scores_any_fold(tiny, tmp_path, capsys):
    summary = train("lseg_zs_demo_episodes", [*tiny, "model.clip.pretrained=null", "data.fold=1"])
    final = summary["final"]
    assert summary["global_step"] == 4
    assert 0 <= final["val/mIoU/episodes/synthetic"] <= 1 and 0 <= final["val/FB-IoU/episodes/synthetic"] <= 1
    assert final["val/mIoU"] == final["val/mIoU/episodes/synthetic"]
    ckpt = Path(summary["last_checkpoint"])
    capsys.readouterr()
    args = [a for a in tiny if not a.startswith(("trainer.", "data.batch_size"))]
    assert (
        main(
            ["eval", "lseg_zs_demo_episodes", f"ckpt={ckpt}", *args, "data.fold=2", "benchmarks=[synthetic]"]
        )
        == 0
    )
    printed = capsys.readouterr().out
    results = json.loads((ckpt.parent.parent / "eval" / "results.json").read_text())
    episodes = results["synthetic/fold2"]
    assert episodes["settings"]["mode"] == "episodes" and episodes["settings"]["fold"] == 2
    assert set(episodes["per_class"]) == {"grass", "tree"}  # the world's classes 2 and 7
    assert 0 <= episodes["mIoU"] <= 1 and 0 <= episodes["FB-IoU"] <= 1 and episodes["images"] > 0
    assert "synthetic" in results  # the dense benchmark beside the episodes
    assert (
        "FB-IoU" in printed
        and "| synthetic/fold2 |" in (ckpt.parent.parent / "eval" / "results.md").read_text()
    )


def test_episode_training_without_a_fold_stops_at_once(tiny, capsys):
    assert (
        main(["train", "lseg_zs_demo_episodes", *tiny, "model.clip.pretrained=null", "data.fold=null"]) == 2
    )
    assert "data.fold" in capsys.readouterr().err
