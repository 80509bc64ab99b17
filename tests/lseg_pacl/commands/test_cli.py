import json
import subprocess
import sys

import pytest

from lseg_pacl.commands.cli import main


def test_data_synth_writes_the_world_and_reports_it(tmp_path, capsys):
    out = tmp_path / "w"
    assert main(["data", "synth", f"out={out}", "seed=1", "n_train=3", "n_val=2"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (
        report["manifest"]["n_train"] == 3
        and (out / "coco" / "annotations" / "captions_val2017.json").is_file()
    )


def test_data_synth_refuses_a_users_folder(tmp_path, capsys):
    (tmp_path / "mine.txt").write_text("keep me")
    assert main(["data", "synth", f"out={tmp_path}", "n_train=2", "n_val=1"]) == 2
    assert (tmp_path / "mine.txt").read_text() == "keep me"
    assert "error:" in capsys.readouterr().err


def test_data_synth_rejects_unknown_options(capsys):
    assert main(["data", "synth", "out=x", "colour=red"]) == 2
    assert "colour=red" in capsys.readouterr().err


@pytest.mark.slow
def test_module_entry_point_runs():
    done = subprocess.run(
        [sys.executable, "-m", "lseg_pacl", "train", "no_such_experiment"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "no experiment named" in done.stderr and "Traceback" not in done.stderr


def test_eval_of_a_pipeline_asks_for_a_stage(capsys):
    assert main(["eval", "demo"]) == 2
    assert "demo_clip" in capsys.readouterr().err


def test_data_classes_prints_each_benchmarks_names(capsys):
    counts = {}
    for name in ("ade20k", "voc20", "voc21", "context59", "context60", "coco_stuff171"):
        assert main(["data", "classes", f"dataset={name}"]) == 0
        counts[name] = len(json.loads(capsys.readouterr().out))
    assert counts == {"ade20k": 150, "voc20": 20, "voc21": 21, "context59": 59, "context60": 60,
                      "coco_stuff171": 171}


def test_data_classes_of_the_synthetic_world(world, capsys):
    assert main(["data", "classes", "dataset=synthetic", f"root={world}"]) == 0
    assert json.loads(capsys.readouterr().out)[:3] == ["sky", "wall", "grass"]


def test_data_commands_name_what_is_wrong(tmp_path, capsys):
    assert main(["data", "classes", "dataset=coco_captions"]) == 2
    assert main(["data", "classes", "dataset=voc22"]) == 2
    assert "voc21" in capsys.readouterr().err
    assert main(["data", "check", "dataset=voc21", f"root={tmp_path}"]) == 3
    err = capsys.readouterr().err
    assert "ImageSets/Segmentation/val.txt" in err and "Traceback" not in err


def test_data_check_prints_a_json_summary(world, capsys):
    assert main(["data", "check", "dataset=synthetic", f"root={world}", "split=validation"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == report["pairs_ok"] == 8 and report["problems"] == []
    assert sum(report["label_hist"].values()) == 8 * 64 * 64
