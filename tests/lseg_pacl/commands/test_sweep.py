"""``lseg-pacl sweep``: a W&B sweep file's grid run trial by trial, as an agent would pass the values."""

import json

import pytest

from lseg_pacl.commands.cli import main
from lseg_pacl.commands.sweep import combinations, read_sweep, sweep_command
from lseg_pacl.errors import ConfigError

SWEEP = """
name: tiny
method: grid
metric: {name: val/mIoU, goal: maximize}
parameters:
  optim.lr: {values: [0.001, 0.002]}
  trainer.max_steps: {value: 2}
command: ["${env}", "python", "-m", "lseg_pacl", "train", "demo_clip", "data.val.max_images=4",
          "${args_no_hyphens}"]
"""


def test_grid_and_command_are_read_like_a_wandb_agent_would(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text(SWEEP)
    sweep = read_sweep(f)
    assert sweep_command(sweep) == ("demo_clip", ["data.val.max_images=4"])
    assert combinations(sweep["parameters"]) == [
        ["optim.lr=0.001", "trainer.max_steps=2"],
        ["optim.lr=0.002", "trainer.max_steps=2"],
    ]
    f.write_text(SWEEP.replace("method: grid", "method: bayes"))
    with pytest.raises(ConfigError, match="grids only"):
        read_sweep(f)


@pytest.mark.slow
def test_every_trial_runs_and_the_results_are_written(tiny, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    f = tmp_path / "s.yaml"
    f.write_text(SWEEP)
    assert main(["sweep", str(f), *tiny]) == 0
    (results_file,) = (tmp_path / "runs" / "sweeps").glob("tiny-*/results.json")
    results = json.loads(results_file.read_text())
    assert [r["params"][0] for r in results] == ["optim.lr=0.001", "optim.lr=0.002"]
    assert all(0 <= r["val/mIoU"] <= 1 for r in results) and len({r["run_dir"] for r in results}) == 2


def test_the_shipped_sweep_files_parse():
    from lseg_pacl.config.loading import experiments_dir

    files = sorted((experiments_dir() / "sweeps").glob("*.yaml"))
    assert files
    for f in files:
        sweep = read_sweep(f)
        experiment, _ = sweep_command(sweep)
        assert (experiments_dir() / f"{experiment}.yaml").is_file() and combinations(sweep["parameters"])
