"""Planning a training run, computed once before anything is built: the resolved config, the run directory and
id, and the checkpoint to continue from. Planning reads (experiment files, saved configs, checkpoint
manifests) and writes nothing; the runner executes the plan.

Fresh runs go to ``run.dir`` or ``<run.root>/<experiment>/<run id>``; ``resume=DIR|last`` continues a run with
its saved config (only harmless keys may change, resume.py); ``resume=auto`` continues the named run when it
has a checkpoint and starts it otherwise. A pipeline experiment (``stages``) plans each stage when its turn
comes (``plan_stage``), since a stage takes the weights the one before it ended with.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from lseg_pacl.config.loading import load_config, load_saved, saved_with_overrides, with_fields
from lseg_pacl.config.validation import check_trainable
from lseg_pacl.errors import ConfigError, MissingInputError
from lseg_pacl.training.launch import Launch
from lseg_pacl.training.resume import (
    checked_resume,
    checkpoint_to_resume,
    has_checkpoint,
    has_progress,
    run_to_resume,
    without_resume,
)

PREVIOUS_STAGE = (
    "previous_stage"  # model.clip.pretrained value: the CLIP weights of the pipeline's stage before
)


@dataclass(frozen=True)
class RunPlan:
    config: DictConfig  # resolved: run.dir and run.id are this plan's
    run_dir: Path
    resuming: bool
    start_from: Path | None  # the checkpoint a single run continues from (None: from the start)

    @property
    def run_id(self) -> str:
        return str(self.config.run.id)

    @property
    def is_pipeline(self) -> bool:
        return bool(self.config.stages)


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


def experiment_root(cfg: DictConfig) -> Path:
    return Path(cfg.run.root) / cfg.run.experiment


def _shared_run_id(cfg: DictConfig, launch: Launch) -> str:
    """A run id every rank agrees on without talking: explicit, inherited from rank 0, or the launcher's job
    id."""
    if cfg.run.id:
        return cfg.run.id
    if launch.inherited_id:
        return launch.inherited_id
    if launch.together:
        if launch.job_id is None:
            raise ConfigError(
                "several processes were launched together: pass run.id=NAME (or run.dir=DIR) so that "
                "every rank writes to the same run"
            )
        return f"job-{launch.job_id}"
    return new_run_id()


def stage_overrides(overrides: list[str]) -> list[str]:
    """What a pipeline's command line passes on to each stage (not its resume, run location or stage list)."""
    return [o for o in without_resume(overrides) if not o.startswith(("run.", "stages"))]


def _finished(cfg: DictConfig, run_dir: Path, run_id: str, resuming: bool, start: Path | None,
              overrides: list[str] = ()) -> RunPlan:
    if cfg.stages:  # every stage takes these overrides: a bad one stops the launch now, before anything runs
        for stage in cfg.stages:
            check_trainable(load_config(stage, stage_overrides(list(overrides))))
    else:
        if cfg.model.clip.pretrained == PREVIOUS_STAGE:
            raise ConfigError(
                f"model.clip.pretrained={PREVIOUS_STAGE} only works inside a pipeline experiment; "
                f"pass a CLIP checkpoint file instead"
            )
        check_trainable(cfg)
    resolved = with_fields(cfg, {"run.dir": str(run_dir), "run.id": run_id, "resume": None})
    return RunPlan(resolved, run_dir, resuming, start)


def _resumed(cfg: DictConfig, run_dir: Path, overrides: list[str]) -> RunPlan:
    saved = load_saved(run_dir / "config.yaml")
    if saved.run.experiment != cfg.run.experiment:
        raise ConfigError(f"{run_dir} is a run of '{saved.run.experiment}', not '{cfg.run.experiment}'")
    run_id = saved.run.id or run_dir.name  # the folder may have moved: its own name then
    if saved.stages:  # a pipeline: each stage's own config is checked when that stage resumes
        if not has_progress(run_dir):
            raise MissingInputError(f"nothing to resume in {run_dir}: no stage has a checkpoint yet")
        pipeline = saved_with_overrides(saved, without_resume(overrides))
        return _finished(pipeline, run_dir, run_id, True, None, overrides)
    if not has_checkpoint(run_dir):
        raise MissingInputError(
            f"nothing to resume in {run_dir}: no intact checkpoint in {run_dir / 'checkpoints'}"
        )
    resumed = checked_resume(saved, overrides, run_dir)
    return _finished(resumed, run_dir, run_id, True, checkpoint_to_resume(run_dir))


def plan_run(experiment: str, overrides: list[str], launch: Launch) -> RunPlan:
    """The plan of ``lseg-pacl train EXPERIMENT overrides...`` for a process launched as ``launch``."""
    cfg = load_config(experiment, overrides)
    if cfg.resume == "auto":
        if not (cfg.run.dir or cfg.run.id or launch.inherited_id or launch.together):
            raise ConfigError(
                "resume=auto needs a run to look for: pass run.id=NAME or run.dir=DIR (under SLURM or "
                "torchrun the job id names it)"
            )
        run_dir = Path(cfg.run.dir) if cfg.run.dir else experiment_root(cfg) / _shared_run_id(cfg, launch)
        if (run_dir / "config.yaml").is_file() and has_progress(run_dir):
            return _resumed(cfg, run_dir, overrides)
        # started before but never saved (or never started): a fresh run there, replacing its config.yaml
        return _finished(cfg, run_dir, _shared_run_id(cfg, launch), False, None, overrides)
    if cfg.resume:
        return _resumed(cfg, run_to_resume(cfg.resume, experiment, experiment_root(cfg)), overrides)
    if launch.inherited_dir is not None and launch.rank != 0:  # a DDP rank started by rank 0: same directory
        return _finished(cfg, launch.inherited_dir, _shared_run_id(cfg, launch), False, None, overrides)
    run_id = _shared_run_id(cfg, launch)
    run_dir = Path(cfg.run.dir) if cfg.run.dir else experiment_root(cfg) / run_id
    if (run_dir / "config.yaml").exists() and launch.rank == 0:
        raise ConfigError(
            f"{run_dir} already holds a run; continue it with resume={run_dir} or choose another run.dir"
        )
    return _finished(cfg, run_dir, run_id, False, None, overrides)


def plan_stage(pipeline: RunPlan, stage: str, overrides: list[str], previous: str | None) -> RunPlan:
    """One stage of a pipeline, in ``<run dir>/<stage>``: continued when it has a checkpoint and the pipeline
    is resuming, else started with ``previous`` (the stage before's last checkpoint) where it asks for it."""
    stage_dir = pipeline.run_dir / stage
    own = stage_overrides(overrides)
    run_id = f"{pipeline.run_id}-{stage}"
    if pipeline.resuming and has_checkpoint(stage_dir):
        resumed = checked_resume(load_saved(stage_dir / "config.yaml"), own, stage_dir)
        return _finished(resumed, stage_dir, run_id, True, checkpoint_to_resume(stage_dir))
    cfg = load_config(stage, own)
    if cfg.model.clip.pretrained == PREVIOUS_STAGE:
        if previous is None:
            raise ConfigError(f"stage {stage} takes the previous stage's weights, but it is the first stage")
        cfg = with_fields(cfg, {"model.clip.pretrained": previous})
    return _finished(cfg, stage_dir, run_id, False, None)
