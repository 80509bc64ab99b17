"""End-to-end runs of the tiny demo experiments on the small synthetic world (a few seconds each)."""

import csv
import json
from pathlib import Path

import pytest
import torch

from lseg_pacl.commands.cli import main
from lseg_pacl.errors import ConfigError, MissingInputError
from lseg_pacl.objectives import load_objective
from lseg_pacl.training.runner import train


def rows(run_dir: Path) -> list[dict]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_a_run_writes_its_directory(tiny, tmp_path, capsys):
    summary = train("demo_clip", [*tiny, "trainer.val_check_interval=2"])  # validate during training
    run_dir = Path(summary["run_dir"])
    assert run_dir.parent == tmp_path / "runs" / "demo_clip"
    assert (run_dir / "config.yaml").is_file()
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert list((run_dir / "checkpoints").glob("best-step*.ckpt"))
    steps = sorted(int(r["step"]) for r in rows(run_dir) if r.get("train/loss"))
    assert steps == [0, 1, 2, 3]  # every step logged
    assert 0.0 <= summary["final"]["val/mIoU"] <= 1.0
    saved = json.loads((run_dir / "summary.json").read_text())
    assert saved["global_step"] == 4
    out = capsys.readouterr().out
    assert str(run_dir) in out and "val/mIoU" in out


@pytest.mark.slow
def test_resume_continues_in_the_same_directory(tiny):
    first = train("demo_clip", tiny)
    run_dir = Path(first["run_dir"])
    second = train("demo_clip", [*tiny, f"resume={run_dir}", "trainer.max_steps=7"])
    assert Path(second["run_dir"]) == run_dir
    assert second["global_step"] == 7
    steps = sorted(int(r["step"]) for r in rows(run_dir) if r.get("train/loss"))
    assert steps[:4] == [0, 1, 2, 3] and steps[-1] == 6  # history kept, training went on from step 4
    assert len(list(run_dir.parent.iterdir())) == 1


@pytest.mark.slow
def test_resume_last_picks_the_newest_run_with_a_checkpoint(tiny, tmp_path):
    train("demo_clip", tiny)
    second = train("demo_clip", tiny)
    stub = tmp_path / "runs" / "demo_clip" / "zz-stub"  # newer, but it never saved anything
    stub.mkdir()
    (stub / "config.yaml").write_text("run:\n  experiment: demo_clip\n")
    again = train("demo_clip", [*tiny, "resume=last", "trainer.max_steps=5"])
    assert again["run_dir"] == second["run_dir"] and again["global_step"] == 5


class Crash(Exception):
    pass


@pytest.mark.slow
def test_an_interrupted_run_resumes_from_its_newest_state(tiny, tmp_path, monkeypatch):
    from lightning.pytorch.callbacks import Callback

    import lseg_pacl.training.runner as runner

    class CrashAtStep5(Callback):
        def on_train_batch_start(self, trainer, *args):
            if trainer.global_step == 5:
                raise Crash()

    real = runner.checkpoint_callbacks
    monkeypatch.setattr(runner, "checkpoint_callbacks", lambda *a: [*real(*a), CrashAtStep5()])
    # lr 0: val/mIoU never improves after step 2, so the best state (2) and the newest (4) differ
    with pytest.raises(Crash):
        train("demo_clip", [*tiny, "trainer.val_check_interval=2", "trainer.max_steps=8", "optim.lr=0"])
    run_dir = next((tmp_path / "runs" / "demo_clip").iterdir())
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == 4  # the newest save (validation at step 4), not the best one
    monkeypatch.setattr(runner, "checkpoint_callbacks", real)
    done = train("demo_clip", [*tiny, "resume=last", "trainer.val_check_interval=2", "trainer.max_steps=8"])
    assert done["run_dir"] == str(run_dir) and done["global_step"] == 8
    final = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert final["global_step"] == 8


def test_a_pipeline_with_nothing_to_resume_is_an_error(tiny, tmp_path):
    run_dir = tmp_path / "runs" / "demo" / "empty"
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text("run:\n  experiment: demo\nstages: [demo_clip, demo_pacl]\n")
    with pytest.raises(MissingInputError, match="nothing to resume"):
        train("demo", [*tiny, f"resume={run_dir}"])


def test_a_failed_start_leaves_no_run_behind(tiny, tmp_path, capsys):
    assert main(["train", "demo_clip", *tiny, "trainer.precision=bogus"]) == 2
    assert "trainer" in capsys.readouterr().err
    assert not list((tmp_path / "runs").glob("demo_clip/*/config.yaml"))


def test_a_wrong_dataset_layout_is_named_not_a_traceback(tiny, tmp_path, capsys):
    empty = tmp_path / "not_ade"
    empty.mkdir()
    assert (
        main(["train", "demo_clip", *tiny, "data.val.datasets=[ade20k]", f"data.val.roots.ade20k={empty}"])
        == 3
    )
    err = capsys.readouterr().err
    assert "data.val.roots.ade20k" in err and str(empty) in err and "Traceback" not in err
    assert "annotations/validation/<stem>.png" in err  # the expected layout is shown


def test_online_wandb_without_a_key_says_how_to_provide_one(tiny, monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    overrides = [o for o in tiny if not o.startswith("logger.wandb.mode")]
    assert main(["train", "demo_clip", *overrides, "logger.wandb.mode=online"]) == 3
    assert "WANDB_API_KEY" in capsys.readouterr().err


def test_resume_from_nothing_is_an_error(tiny, tmp_path, capsys):
    with pytest.raises(MissingInputError, match="no run"):
        train("demo_clip", [*tiny, "resume=last"])
    assert main(["train", "demo_clip", *tiny, f"resume={tmp_path / 'nothing'}"]) == 3
    assert "not a run directory" in capsys.readouterr().err


def test_resume_without_a_checkpoint_is_an_error(tiny, tmp_path):
    run_dir = tmp_path / "half"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("run:\n  experiment: demo_clip\n")
    with pytest.raises(MissingInputError, match="no intact checkpoint"):
        train("demo_clip", [*tiny, f"resume={run_dir}"])


@pytest.mark.slow
def test_an_existing_run_directory_is_never_overwritten(tiny, tmp_path):
    target = tmp_path / "mine"
    train("demo_clip", [*tiny, f"run.dir={target}"])
    before = (target / "config.yaml").read_bytes()
    with pytest.raises(ConfigError, match="already holds a run"):
        train("demo_clip", [*tiny, f"run.dir={target}", "seed=3"])
    assert (target / "config.yaml").read_bytes() == before


@pytest.mark.slow
def test_checkpoint_loads_alone_and_eval_reproduces_the_final_miou(tiny, capsys):
    # 6 steps per epoch: the run passes an epoch end and validations, and stops 2 steps later
    summary = train(
        "demo_pacl",
        [*tiny, "model.clip.pretrained=null", "trainer.max_steps=8", "trainer.val_check_interval=3"],
    )
    assert summary["global_step"] == 8
    ckpt = summary["last_checkpoint"]
    blob = torch.load(ckpt, map_location="cpu", weights_only=True)  # plain containers only
    assert blob["hyper_parameters"]["config"]["model"]["objective"] == "pacl"
    module = load_objective(ckpt)
    assert type(module).__name__ == "Pacl"
    assert main(["eval", "demo_pacl", *tiny, f"ckpt={ckpt}"]) == 0
    results = json.loads((Path(summary["run_dir"]) / "eval" / "results.json").read_text())
    assert results["synthetic"]["mIoU"] == pytest.approx(summary["final"]["val/mIoU"], abs=1e-6)
    assert results["synthetic"]["images"] == 8


def test_previous_stage_outside_a_pipeline_is_an_error(tiny):
    with pytest.raises(ConfigError, match="previous_stage"):
        train("demo_pacl", tiny)


@pytest.mark.slow
def test_pipeline_runs_both_stages_and_pacl_starts_from_stage_one(tiny, capsys):
    summary = train("demo", tiny)
    stages = summary["stages"]
    assert list(stages) == ["demo_clip", "demo_pacl"]
    clip_ckpt = torch.load(stages["demo_clip"]["last_checkpoint"], map_location="cpu", weights_only=True)
    pacl_ckpt = torch.load(stages["demo_pacl"]["last_checkpoint"], map_location="cpu", weights_only=True)
    key = "clip.model.visual.proj"
    torch.testing.assert_close(
        clip_ckpt["state_dict"][key], pacl_ckpt["state_dict"][key]
    )  # frozen, inherited
    out = capsys.readouterr().out
    assert "demo_clip" in out and "demo_pacl" in out and "val/mIoU" in out
    # resuming a finished pipeline does no more work and reports the same numbers
    again = train("demo", [*tiny, f"resume={summary['run_dir']}"])
    assert again["stages"]["demo_pacl"]["final"] == stages["demo_pacl"]["final"]


@pytest.mark.slow
def test_resume_refuses_model_or_data_changes_and_allows_harmless_ones(tiny, tmp_path):
    target = tmp_path / "r"
    train("demo_clip", [*tiny, f"run.dir={target}"])
    with pytest.raises(ConfigError) as err:
        train(
            "demo_clip",
            [*tiny, f"resume={target}", "model.clip.image_size=96", "data.train.hflip=false", "seed=3"],
        )
    assert all(k in str(err.value) for k in ("model.clip.image_size", "data.train.hflip", "seed"))
    assert "trainer.max_steps" not in str(err.value)
    done = train("demo_clip", [*tiny, f"resume={target}", "trainer.max_steps=6", "data.num_workers=0"])
    assert done["global_step"] == 6


@pytest.mark.slow
def test_resume_auto_starts_then_continues_the_named_run(tiny, tmp_path):
    target = tmp_path / "auto"
    first = train("demo_clip", [*tiny, f"run.dir={target}", "resume=auto", "trainer.max_steps=2"])
    assert first["global_step"] == 2 and first["run_dir"] == str(target)
    second = train("demo_clip", [*tiny, f"run.dir={target}", "resume=auto", "trainer.max_steps=4"])
    assert second["global_step"] == 4 and second["run_dir"] == str(target)
    with pytest.raises(ConfigError, match="resume=auto needs"):
        train("demo_clip", [*tiny, "resume=auto"])
