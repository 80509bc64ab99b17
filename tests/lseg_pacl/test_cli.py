import json
import subprocess
import sys

from lseg_pacl.cli import main


def test_data_synth_writes_the_world_and_reports_it(tmp_path, capsys):
    out = tmp_path / "w"
    assert main(["data", "synth", f"out={out}", "seed=1", "n_train=3", "n_val=2"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["manifest"]["n_train"] == 3 and (out / "coco" / "annotations" / "captions_val2017.json").is_file()


def test_data_synth_refuses_a_users_folder(tmp_path, capsys):
    (tmp_path / "mine.txt").write_text("keep me")
    assert main(["data", "synth", f"out={tmp_path}", "n_train=2", "n_val=1"]) == 2
    assert (tmp_path / "mine.txt").read_text() == "keep me"
    assert "error:" in capsys.readouterr().err


def test_data_synth_rejects_unknown_options(capsys):
    assert main(["data", "synth", "out=x", "colour=red"]) == 2
    assert "colour=red" in capsys.readouterr().err


def test_module_entry_point_runs():
    done = subprocess.run([sys.executable, "-m", "lseg_pacl", "train", "no_such_experiment"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and "no experiment named" in done.stderr and "Traceback" not in done.stderr


def test_eval_of_a_pipeline_asks_for_a_stage(capsys):
    assert main(["eval", "demo"]) == 2
    assert "demo_clip" in capsys.readouterr().err
