"""From a config to a finished run: run directories, resume, loggers, callbacks, the Trainer, the summary.

A run directory (runs/<experiment>/<run id>/) holds config.yaml, checkpoints/ (last.ckpt and the best by
val/mIoU), metrics.csv, wandb/ and summary.json (the final metrics, measured on the final weights). A pipeline
experiment (``stages``) runs each stage in a sub-directory of one run directory, in order.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import secrets
import time
from pathlib import Path
from typing import Any

import lightning as L
from lightning.fabric.loggers.csv_logs import _ExperimentWriter
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.plugins.environments import SLURMEnvironment
from omegaconf import DictConfig, OmegaConf

from lseg_pacl.training.data import build_train_data, check_inputs
from lseg_pacl.training.checkpointing import (
    LAST,
    SafeCheckpointIO,
    SaveLast,
    checkpoint_callbacks,
    checkpoints_by_step,
    resume_checkpoint,
)
from lseg_pacl.config.loading import load_config, load_saved, merge_overrides, resume_changes, to_plain
from lseg_pacl.training.data_hooks import DataEpoch, LoaderPosition, SkipMonitor
from lseg_pacl.errors import ConfigError, MissingInputError
from lseg_pacl.objectives import build_objective
from lseg_pacl.training.preemption import PreemptionHandler
from lseg_pacl.training.step_seed import StepSeed

log = logging.getLogger(__name__)

RUN_DIR_ENV = "LSEG_PACL_RUN_DIR"  # rank 0 chooses the run directory and id; ranks launched after it inherit
RUN_ID_ENV = "LSEG_PACL_RUN_ID"
PREVIOUS_STAGE = "previous_stage"  # model.clip.pretrained value: the CLIP weights of the pipeline's stage before


# ------------------------------------------------------------------------------------------------ run dirs


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


def process_rank() -> int:
    """This process's global rank as launchers announce it (0 when launched alone)."""
    for var in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        value = os.environ.get(var, "")
        if value.isdigit():
            return int(value)
    return 0


def _launched_together() -> bool:
    """Several processes started at once by torchrun or SLURM (rather than spawned by rank 0)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1) > 1 or int(os.environ.get("SLURM_NTASKS", "1") or 1) > 1


def _shared_run_id(cfg: DictConfig) -> str:
    """A run id every rank agrees on without talking: explicit, inherited from rank 0, or the launcher's job id."""
    if cfg.run.id:
        return cfg.run.id
    if os.environ.get(RUN_ID_ENV):
        return os.environ[RUN_ID_ENV]
    if _launched_together():
        job = os.environ.get("SLURM_JOB_ID") or os.environ.get("TORCHELASTIC_RUN_ID", "none")
        if job == "none":
            raise ConfigError("several processes were launched together: pass run.id=NAME (or run.dir=DIR) so that "
                              "every rank writes to the same run")
        return f"job-{job}"
    return new_run_id()


def experiment_root(cfg: DictConfig) -> Path:
    return Path(cfg.run.root) / cfg.run.experiment


def _has_checkpoint(run_dir: Path) -> bool:
    folder = run_dir / "checkpoints"
    return bool(checkpoints_by_step(folder)) or (folder / LAST).is_file()


def _has_progress(run_dir: Path) -> bool:
    """A run (or a pipeline stage of it) that saved a checkpoint or finished."""
    return _has_checkpoint(run_dir) or any(_has_checkpoint(p.parent) for p in run_dir.glob("*/config.yaml")) or any(
        run_dir.glob("*/summary.json"))


def checkpoint_to_resume(run_dir: Path) -> Path:
    """The newest intact checkpoint of a run (checkpointing.py); an error when there is none."""
    folder = run_dir / "checkpoints"
    for stale in folder.glob(".*.tmp"):  # a save that was killed before its rename
        stale.unlink(missing_ok=True)
    found = resume_checkpoint(folder)
    if found is not None:
        return found
    if (folder / LAST).is_file() and not checkpoints_by_step(folder):  # written before checkpoints had manifests
        log.warning("resuming from %s, which has no manifest to verify it against", folder / LAST)
        return folder / LAST
    raise MissingInputError(f"nothing to resume in {run_dir}: no intact checkpoint in {folder}")


def newest_run(root: Path) -> Path | None:
    runs = [p.parent for p in root.glob("*/config.yaml") if _has_progress(p.parent)] if root.is_dir() else []
    return max(runs, key=lambda p: (p / "config.yaml").stat().st_mtime) if runs else None


def resolve_resume(cfg: DictConfig) -> Path:
    """The run directory to continue; an error (never a fresh start) when there is none."""
    if cfg.resume == "last":
        found = newest_run(experiment_root(cfg))
        if found is None:
            raise MissingInputError(f"resume=last: no run of '{cfg.run.experiment}' with a checkpoint under "
                                    f"{experiment_root(cfg)}")
        return found
    run_dir = Path(cfg.resume).expanduser()
    if not (run_dir / "config.yaml").is_file():
        raise MissingInputError(f"resume={cfg.resume}: {run_dir} is not a run directory (no config.yaml)")
    return run_dir


def _write_config(cfg: DictConfig, run_dir: Path) -> None:
    if process_rank() != 0:
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = run_dir / f"config.yaml.{os.getpid()}.tmp"
    tmp.write_text(OmegaConf.to_yaml(OmegaConf.create(to_plain(cfg))), encoding="utf-8")
    tmp.replace(run_dir / "config.yaml")


def _strip_resume(overrides: list[str]) -> list[str]:
    return [o for o in overrides if not o.split("=", 1)[0].strip() == "resume"]


def checked_resume(saved: DictConfig, overrides: list[str], where: Path) -> DictConfig:
    """The saved config with this launch's overrides; an error listing the keys that would change the model or
    the data under a checkpoint made with others (harmless ones, e.g. trainer.max_steps, are logged)."""
    resumed = merge_overrides(saved, overrides)
    refused, allowed = resume_changes(saved, resumed)
    if refused:
        raise ConfigError(f"resuming {where} with a different " + ", ".join(
            f"{k} ({OmegaConf.select(saved, k)!r} -> {OmegaConf.select(resumed, k)!r})" for k in refused)
            + ": these change the model or the data its checkpoint was trained on; start a new run instead")
    if allowed:
        log.info("resuming %s with changed %s", where, ", ".join(allowed))
    return resumed


def _auto_resume(cfg: DictConfig) -> DictConfig:
    """resume=auto: the run in run.dir / run.id / the launcher's job when it has a checkpoint, else a fresh run
    there (a requeued SLURM job passes this and continues where it stopped)."""
    if not (cfg.run.dir or cfg.run.id or os.environ.get(RUN_ID_ENV) or _launched_together()):
        raise ConfigError("resume=auto needs a run to look for: pass run.id=NAME or run.dir=DIR (under SLURM or "
                          "torchrun the job id names it)")
    run_dir = Path(cfg.run.dir) if cfg.run.dir else experiment_root(cfg) / _shared_run_id(cfg)
    if (run_dir / "config.yaml").is_file() and _has_progress(run_dir):
        log.info("resume=auto: continuing %s", run_dir)
        return merge_overrides(cfg, [f"resume={run_dir}"], "runner")
    if (run_dir / "config.yaml").is_file() and process_rank() == 0:  # started before but never saved: restart it
        (run_dir / "config.yaml").unlink()
    return merge_overrides(cfg, ["resume=null", f"run.dir={run_dir}"], "runner")


def prepare_run(cfg: DictConfig, overrides: list[str]) -> tuple[DictConfig, Path, bool]:
    """(config, run directory, resuming?) for a fresh run or a resumed one."""
    if cfg.resume == "auto":
        cfg = _auto_resume(cfg)
    if cfg.resume:
        run_dir = resolve_resume(cfg)
        saved = load_saved(run_dir / "config.yaml")
        if saved.run.experiment != cfg.run.experiment:
            raise ConfigError(f"{run_dir} is a run of '{saved.run.experiment}', not '{cfg.run.experiment}'")
        where = [f"run.dir={run_dir}", f"run.id={saved.run.id or run_dir.name}"]  # the folder may have moved
        if saved.stages:  # a pipeline: each stage's own config is checked when that stage resumes
            return merge_overrides(saved, [*_strip_resume(overrides), *where]), run_dir, True
        if not _has_checkpoint(run_dir):
            raise MissingInputError(f"nothing to resume in {run_dir}: no intact checkpoint in {run_dir / 'checkpoints'}")
        return checked_resume(saved, [*_strip_resume(overrides), *where], run_dir), run_dir, True
    inherited = os.environ.get(RUN_DIR_ENV)
    if inherited and process_rank() != 0:  # a DDP rank started by rank 0: same directory, same id
        run_dir = Path(inherited)
        return merge_overrides(cfg, [f"run.dir={run_dir}", f"run.id={_shared_run_id(cfg)}"], "runner"), run_dir, False
    run_id = _shared_run_id(cfg)
    run_dir = Path(cfg.run.dir) if cfg.run.dir else experiment_root(cfg) / run_id
    if (run_dir / "config.yaml").exists() and process_rank() == 0:
        raise ConfigError(f"{run_dir} already holds a run; continue it with resume={run_dir} or choose another "
                          f"run.dir")
    return merge_overrides(cfg, [f"run.dir={run_dir}", f"run.id={run_id}"], "runner"), run_dir, False


# ------------------------------------------------------------------------------------------------ loggers


class _AppendingWriter(_ExperimentWriter):
    """Lightning's CSV writer deletes an existing metrics.csv; a resumed run appends to it instead."""

    def _check_log_dir_exists(self) -> None:
        if os.path.isfile(self.metrics_file_path):
            with open(self.metrics_file_path, newline="") as file:
                self.metrics_keys = list(next(csv.reader(file), []))


class RunCSVLogger(CSVLogger):
    """metrics.csv directly in the run directory, appended to on resume."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__(save_dir=str(run_dir), name="", version="")

    @property
    def experiment(self) -> _ExperimentWriter:
        if self._experiment is None:
            os.makedirs(self.log_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment

    def log_hyperparams(self, params: Any = None) -> None:
        """The config is already in config.yaml; no second copy."""


def _wandb_key_available() -> bool:
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    return bool(os.environ.get("WANDB_API_KEY")) or (netrc.is_file() and "wandb" in netrc.read_text(errors="ignore"))


def build_loggers(cfg: DictConfig, run_dir: Path) -> list:
    loggers: list = [RunCSVLogger(run_dir)]
    w = cfg.logger.wandb
    if w.mode == "online" and not _wandb_key_available():
        raise MissingInputError("logger.wandb.mode=online needs a W&B API key: set WANDB_API_KEY in the environment "
                                "or run `wandb login` (or use logger.wandb.mode=offline and `wandb sync` later)")
    if w.mode != "disabled":
        from lightning.pytorch.loggers import WandbLogger

        loggers.append(WandbLogger(project=w.project, entity=w.entity, id=cfg.run.id,
                                   name=f"{cfg.run.experiment}/{cfg.run.id}", save_dir=str(run_dir), mode=w.mode,
                                   resume="allow", tags=list(w.tags), log_model=False))
    return loggers


# ------------------------------------------------------------------------------------------------ one run


def trainer_kwargs(cfg: DictConfig) -> dict:
    return {k: v for k, v in to_plain(cfg.trainer).items() if v is not None}


def make_trainer(max_bad_fraction: float, callbacks: list | None = None, **kwargs: Any) -> L.Trainer:
    """Lightning's Trainer with the data callbacks (epoch to the data, bad-sample counting); a value Lightning
    rejects is a config error naming the trainer.* section."""
    callbacks = [*(callbacks or []), DataEpoch(), LoaderPosition(), SkipMonitor(max_bad_fraction)]
    plugins = [SafeCheckpointIO()]
    if SLURMEnvironment.detect():  # our preemption handler saves and exits; Lightning's own requeue stays off
        plugins.append(SLURMEnvironment(auto_requeue=False))
    try:  # our DataModules shard by rank themselves: validation without Lightning's padding (data_modules/samplers)
        return L.Trainer(callbacks=callbacks, use_distributed_sampler=False, plugins=plugins, **kwargs)
    except (ValueError, TypeError, MisconfigurationException) as exc:
        raise ConfigError(f"bad trainer.* setting: {exc}") from None


def fit(cfg: DictConfig, run_dir: Path, resume: bool) -> dict:
    """Train one experiment in ``run_dir``; returns the final metrics (validated on the final weights)."""
    last = run_dir / "checkpoints" / LAST
    start = checkpoint_to_resume(run_dir) if resume else None
    if cfg.model.clip.pretrained == PREVIOUS_STAGE:
        raise ConfigError(f"model.clip.pretrained={PREVIOUS_STAGE} only works inside a pipeline experiment; pass "
                          f"a CLIP checkpoint file instead")
    check_inputs(cfg)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    module = build_objective(to_plain(cfg))
    data = build_train_data(cfg, module)
    callbacks = checkpoint_callbacks(run_dir / "checkpoints", cfg.run.keep_last)
    save_last = next(c for c in callbacks if isinstance(c, SaveLast))
    trainer = make_trainer(cfg.data.max_bad_fraction,
                           [*callbacks, LearningRateMonitor(logging_interval="step"), StepSeed(cfg.seed),
                            PreemptionHandler(save_last)],
                           **trainer_kwargs(cfg), default_root_dir=str(run_dir), logger=build_loggers(cfg, run_dir))
    _write_config(cfg, run_dir)  # only once everything is built: a failed start leaves no run behind
    trainer.fit(module, datamodule=data, ckpt_path=str(start) if start else None)
    save_last.save(trainer)  # the final state, the one summary.json reports
    final = trainer.validate(module, datamodule=data, verbose=False)
    metrics = {k: float(v) for k, v in (final[0] if final else {}).items()}
    best_path = next((c.best_model_path for c in callbacks if isinstance(c, ModelCheckpoint)), "")
    summary = {"experiment": cfg.run.experiment, "run_dir": str(run_dir), "global_step": trainer.global_step,
               "final": metrics, "best_checkpoint": best_path or None, "last_checkpoint": str(last)}
    if trainer.is_global_zero:
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return summary


def print_summary(summary: dict) -> None:
    run_dir = Path(summary["run_dir"])
    print(f"\nRun finished: {run_dir}")
    for label, path in (("config", "config.yaml"), ("checkpoints", "checkpoints"), ("metrics", "metrics.csv"),
                        ("wandb", "wandb"), ("summary", "summary.json")):
        if (run_dir / path).exists():
            print(f"  {label:<12}{run_dir / path}")
    finals = ", ".join(f"{k}={v:.4f}" for k, v in sorted(summary["final"].items()))
    print(f"Final metrics (step {summary['global_step']}): {finals}")


# ------------------------------------------------------------------------------------------------ pipelines


def run_pipeline(cfg: DictConfig, run_dir: Path, overrides: list[str], resume: bool) -> dict:
    """Each stage in ``run_dir/<stage>``; a stage with summary.json is done, one with a last.ckpt continues."""
    if resume and not _has_progress(run_dir):
        raise MissingInputError(f"nothing to resume in {run_dir}: no stage has a checkpoint yet")
    _write_config(cfg, run_dir)
    stage_overrides = [o for o in _strip_resume(overrides) if not o.startswith(("run.", "stages"))]
    results, previous = {}, None
    for stage in cfg.stages:
        stage_dir = run_dir / stage
        done = stage_dir / "summary.json"
        if done.is_file():
            results[stage] = json.loads(done.read_text(encoding="utf-8"))
            previous = results[stage]["last_checkpoint"]
            print(f"stage {stage}: already done ({stage_dir})")
            continue
        stage_cfg = load_config(stage, stage_overrides)
        links = [f"run.dir={stage_dir}", f"run.id={cfg.run.id}-{stage}"]
        if stage_cfg.model.clip.pretrained == PREVIOUS_STAGE:
            if previous is None:
                raise ConfigError(f"stage {stage} takes the previous stage's weights, but it is the first stage")
            links.append(f"model.clip.pretrained={previous}")
        stage_resume = resume and _has_checkpoint(stage_dir)
        if stage_resume:
            stage_cfg = checked_resume(load_saved(stage_dir / "config.yaml"), stage_overrides, stage_dir)
        else:
            stage_cfg = merge_overrides(stage_cfg, links, "pipeline")
        print(f"stage {stage}: {'resuming' if stage_resume else 'training'} in {stage_dir}")
        results[stage] = fit(stage_cfg, stage_dir, stage_resume)
        previous = results[stage]["last_checkpoint"]
    summary = {"experiment": cfg.run.experiment, "run_dir": str(run_dir), "stages": results}
    if _global_rank() == 0:
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return summary


def print_pipeline(summary: dict) -> None:
    print(f"\nPipeline finished: {summary['run_dir']}")
    print(f"{'stage':<16}{'objective':<12}{'steps':>8}{'val/mIoU':>12}  run directory")
    for stage, s in summary["stages"].items():
        cfg = load_saved(Path(s["run_dir"]) / "config.yaml")
        miou = s["final"].get("val/mIoU", float("nan"))
        print(f"{stage:<16}{cfg.model.objective:<12}{s['global_step']:>8}{miou:>12.4f}  {s['run_dir']}")


# ------------------------------------------------------------------------------------------------ entry


def train(experiment: str, overrides: list[str]) -> dict:
    """``lseg-pacl train EXP k=v ...``: one experiment, or each stage of a pipeline experiment."""
    cfg = load_config(experiment, overrides)
    cfg, run_dir, resume = prepare_run(cfg, overrides)
    os.environ[RUN_DIR_ENV], os.environ[RUN_ID_ENV] = str(run_dir), cfg.run.id
    try:
        if cfg.stages:
            summary = run_pipeline(cfg, run_dir, overrides, resume)
            report = print_pipeline
        else:
            summary = fit(cfg, run_dir, resume)
            report = print_summary
        if _global_rank() == 0:  # under DDP, one report
            report(summary)
        _leave_process_group()  # on success only: a failing rank must exit, not wait at a barrier
    finally:
        os.environ.pop(RUN_DIR_ENV, None)
        os.environ.pop(RUN_ID_ENV, None)
    return summary


def _global_rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else process_rank()


def _leave_process_group() -> None:
    """Under DDP, wait for every rank and close the group: a rank exiting inside gloo aborts the others."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
