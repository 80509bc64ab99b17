"""Planning a run: computed once from the config and what is on disk, writing nothing."""

from pathlib import Path

import pytest

import lseg_pacl.training.plan as plan_module
from lseg_pacl.errors import ConfigError
from lseg_pacl.training.launch import Launch
from lseg_pacl.training.plan import plan_run, plan_stage

ALONE = Launch(rank=0, together=False, job_id=None, inherited_dir=None, inherited_id=None)


def files(root: Path) -> list[Path]:
    return sorted(root.rglob("*")) if root.exists() else []


def test_a_fresh_plan_merges_the_config_once_and_writes_nothing(tiny, tmp_path, monkeypatch):
    calls = []
    real = plan_module.load_config
    monkeypatch.setattr(plan_module, "load_config", lambda *a: calls.append(a) or real(*a))
    before = files(tmp_path)
    plan = plan_run("demo_clip", tiny, ALONE)
    assert len(calls) == 1 and files(tmp_path) == before
    assert plan.run_dir == tmp_path / "runs" / "demo_clip" / plan.run_id and not plan.resuming
    assert plan.config.run.dir == str(plan.run_dir) and plan.config.run.id == plan.run_id
    assert plan.start_from is None and plan.config.resume is None


def test_ranks_agree_on_the_run_without_talking(tiny, tmp_path):
    rank1 = Launch(rank=1, together=False, job_id=None, inherited_dir=tmp_path / "r0", inherited_id="abc")
    plan = plan_run("demo_clip", tiny, rank1)
    assert plan.run_dir == tmp_path / "r0" and plan.run_id == "abc"  # what rank 0 published
    slurm = Launch(rank=3, together=True, job_id="77", inherited_dir=None, inherited_id=None)
    assert plan_run("demo_clip", tiny, slurm).run_id == "job-77"
    with pytest.raises(ConfigError, match="launched together"):
        plan_run(
            "demo_clip",
            tiny,
            Launch(rank=0, together=True, job_id=None, inherited_dir=None, inherited_id=None),
        )


def test_an_evaluation_only_experiment_cannot_be_planned_for_training(tmp_path):
    with pytest.raises(ConfigError, match="'baseline_clip' cannot be trained: data.train.format") as err:
        plan_run("baseline_clip", [f"run.root={tmp_path}"], ALONE)
    assert "optim.lr" in str(err.value)


def test_a_stage_takes_the_previous_stage_weights_as_a_field_not_a_second_merge(tiny, tmp_path):
    pipeline = plan_run("demo", tiny, ALONE)
    stage = plan_stage(pipeline, "demo_pacl", tiny, previous="/w/last.ckpt")
    assert stage.config.model.clip.pretrained == "/w/last.ckpt"
    assert stage.run_dir == pipeline.run_dir / "demo_pacl" and stage.run_id == f"{pipeline.run_id}-demo_pacl"
    with pytest.raises(ConfigError, match="first stage"):
        plan_stage(pipeline, "demo_pacl", tiny, previous=None)


def test_the_launch_is_read_from_the_environment_it_is_given(tmp_path):
    launch = Launch.from_environ({"RANK": "3", "WORLD_SIZE": "4", "TORCHELASTIC_RUN_ID": "t1",
                                  "LSEG_PACL_RUN_DIR": str(tmp_path), "LSEG_PACL_RUN_ID": "r0"})
    assert launch == Launch(rank=3, together=True, job_id="t1", inherited_dir=tmp_path, inherited_id="r0")
    assert Launch.from_environ({}) == ALONE


def test_a_bad_override_of_a_pipeline_stops_before_anything_is_written(tiny, tmp_path):
    with pytest.raises(ConfigError, match="model.objective"):
        plan_run("demo", [*tiny, "model.objective=bogus"], ALONE)
    with pytest.raises(ConfigError, match="optim.lr is not set"):
        plan_run("demo", [*tiny, "optim.lr=null"], ALONE)
    assert not (tmp_path / "runs").exists()
