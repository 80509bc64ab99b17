"""Executing a run's plan: check the inputs, derive the spec, open the feature cache, build the data and the
model from them, fit with the Trainer and its callbacks, validate the final weights, write the summary.

A run directory (runs/<experiment>/<run id>/) holds config.yaml, checkpoints/ (last.ckpt and the best by
val/mIoU), metrics.csv, wandb/ and summary.json (the final metrics, measured on the final weights). A pipeline
experiment (``stages``) runs each stage in a sub-directory of one run directory, in order.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.plugins.environments import SLURMEnvironment
from omegaconf import DictConfig, OmegaConf

from data_modules.ranks import rank
from lseg_pacl.config.loading import load_saved, to_plain
from lseg_pacl.errors import ConfigError
from lseg_pacl.objectives import build_objective
from lseg_pacl.objectives.base import ZeroShotObjective
from lseg_pacl.training.checkpointing import (
    LAST,
    SafeCheckpointIO,
    SaveLast,
    checkpoint_callbacks,
    clear_unfinished_saves,
)
from lseg_pacl.training.data import build_train_data
from lseg_pacl.training.data_hooks import DataEpoch, LoaderPosition, SkipMonitor
from lseg_pacl.training.feature_caching import open_feature_cache, plan_feature_cache
from lseg_pacl.training.inputs import check_inputs
from lseg_pacl.training.launch import Launch, published
from lseg_pacl.training.loggers import build_loggers
from lseg_pacl.training.plan import RunPlan, plan_run, plan_stage
from lseg_pacl.training.preemption import PreemptionHandler
from lseg_pacl.training.spec import run_spec
from lseg_pacl.training.stall import StallGuard, WaitMarker, strategy_with_timeout
from lseg_pacl.training.step_seed import StepSeed

log = logging.getLogger(__name__)


def _write_config(cfg: DictConfig, run_dir: Path) -> None:
    if rank() != 0:
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = run_dir / f"config.yaml.{os.getpid()}.tmp"
    tmp.write_text(OmegaConf.to_yaml(OmegaConf.create(to_plain(cfg))), encoding="utf-8")
    tmp.replace(run_dir / "config.yaml")


def trainer_kwargs(cfg: DictConfig) -> dict:
    """trainer.*, with a DDP strategy's collectives bounded by stall.collective_timeout."""
    kwargs = {k: v for k, v in to_plain(cfg.trainer).items() if v is not None}
    if "strategy" in kwargs:
        kwargs["strategy"] = strategy_with_timeout(kwargs["strategy"], cfg.stall.collective_timeout)
    return kwargs


def make_trainer(max_bad_fraction: float, callbacks: list | None = None, **kwargs: Any) -> L.Trainer:
    """Lightning's Trainer with the data callbacks (epoch to the data, bad-sample counting); a value Lightning
    rejects is a config error naming the trainer.* section."""
    callbacks = [*(callbacks or []), DataEpoch(), LoaderPosition(), SkipMonitor(max_bad_fraction)]
    plugins = [SafeCheckpointIO()]
    if SLURMEnvironment.detect():  # our preemption handler saves and exits; Lightning's own requeue stays off
        plugins.append(SLURMEnvironment(auto_requeue=False))
    # our DataModules shard by rank themselves: validation without Lightning's padding (data_modules/samplers)
    try:
        return L.Trainer(callbacks=callbacks, use_distributed_sampler=False, plugins=plugins, **kwargs)
    except (ValueError, TypeError, MisconfigurationException) as exc:
        raise ConfigError(f"bad trainer.* setting: {exc}") from None


def build_model_and_data(cfg: DictConfig) -> tuple[ZeroShotObjective, L.LightningDataModule]:
    """From a config to what the Trainer fits: the inputs checked (seconds, before any model), the spec both
    sides need, the feature cache opened, then the model and the data, each from those."""
    check_inputs(cfg)
    spec = run_spec(cfg)
    cache_plan = plan_feature_cache(cfg, spec.inputs)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    cache = open_feature_cache(cache_plan, spec.train_root, cfg.data.train.split) if cache_plan else None
    inputs: dict[str, Any] = {"benchmarks": spec.benchmark_classes}
    if spec.train_classes:
        inputs["train_classes"] = spec.train_classes
    if spec.episodes:
        inputs["episodes"] = spec.episode_classes
    if cache is not None:
        inputs["feature_cache"] = cache
    return build_objective(to_plain(cfg), **inputs), build_train_data(cfg, spec, cache)


def fit(plan: RunPlan) -> dict:
    """Train one planned run; returns the final metrics (validated on the final weights)."""
    cfg, run_dir = plan.config, plan.run_dir
    module, data = build_model_and_data(cfg)
    callbacks = checkpoint_callbacks(run_dir / "checkpoints", cfg.run.keep_last)
    save_last = next(c for c in callbacks if isinstance(c, SaveLast))
    preemption = PreemptionHandler(save_last)
    guard = StallGuard(save_last, run_dir / "stalls", cfg.stall.watchdog, cfg.stall.data_timeout,
                       str(cfg.run.experiment), preemption)
    trainer = make_trainer(
        cfg.data.max_bad_fraction,
        [
            guard,  # first: a batch that arrived ends the wait for it before any other hook runs
            *callbacks,
            LearningRateMonitor(logging_interval="step"),
            StepSeed(cfg.seed),
            preemption,
            WaitMarker(guard),  # last: once every other hook has run, the wait for the next batch begins
        ],
        **trainer_kwargs(cfg),
        default_root_dir=str(run_dir),
        logger=build_loggers(cfg, run_dir),
    )
    _write_config(cfg, run_dir)  # only once everything is built: a failed start leaves no run behind
    clear_unfinished_saves(run_dir / "checkpoints")
    with stops_on_stall(guard, trainer):
        trainer.fit(module, datamodule=data, ckpt_path=str(plan.start_from) if plan.start_from else None)
        save_last.save(trainer)  # the final state, the one summary.json reports
        final = trainer.validate(module, datamodule=data, verbose=False)
    metrics = {k: float(v) for k, v in (final[0] if final else {}).items()}
    best_path = next((c.best_model_path for c in callbacks if isinstance(c, ModelCheckpoint)), "")
    summary = {
        "experiment": cfg.run.experiment,
        "objective": cfg.model.objective,
        "run_dir": str(run_dir),
        "global_step": trainer.global_step,
        "final": metrics,
        "best_checkpoint": best_path or None,
        "last_checkpoint": str(run_dir / "checkpoints" / LAST),
    }
    if rank() == 0:
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return summary


@contextlib.contextmanager
def stops_on_stall(guard: StallGuard, trainer: L.Trainer) -> Iterator[None]:
    """A stall leaves as ``Stalled`` (exit code 76), whatever the Trainer raised, and also where the Trainer
    did not pass the error to its callbacks."""
    try:
        yield
    except BaseException as exc:
        if guard.stalled is None:
            guard.on_exception(trainer, trainer.lightning_module, exc)
        if guard.stalled is not None:
            raise guard.stalled from None
        raise
    finally:
        if guard.stalled is None:
            guard.stop()


def print_summary(summary: dict) -> None:
    run_dir = Path(summary["run_dir"])
    print(f"\nRun finished: {run_dir}")
    for label, path in (
        ("config", "config.yaml"),
        ("checkpoints", "checkpoints"),
        ("metrics", "metrics.csv"),
        ("wandb", "wandb"),
        ("summary", "summary.json"),
    ):
        if (run_dir / path).exists():
            print(f"  {label:<12}{run_dir / path}")
    finals = ", ".join(f"{k}={v:.4f}" for k, v in sorted(summary["final"].items()))
    print(f"Final metrics (step {summary['global_step']}): {finals}")


# ------------------------------------------------------------------------------------------------ pipelines


def run_pipeline(plan: RunPlan, overrides: list[str]) -> dict:
    """Each stage in ``run_dir/<stage>``; a stage with summary.json is done, one with a checkpoint
    continues."""
    _write_config(plan.config, plan.run_dir)
    results, previous = {}, None
    for stage in plan.config.stages:
        done = plan.run_dir / stage / "summary.json"
        if done.is_file():
            results[stage] = json.loads(done.read_text(encoding="utf-8"))
            if "objective" not in results[stage]:  # written before summaries named it
                results[stage]["objective"] = load_saved(plan.run_dir / stage / "config.yaml").model.objective
            previous = results[stage]["last_checkpoint"]
            print(f"stage {stage}: already done ({plan.run_dir / stage})")
            continue
        stage_plan = plan_stage(plan, stage, overrides, previous)
        print(f"stage {stage}: {'resuming' if stage_plan.resuming else 'training'} in {stage_plan.run_dir}")
        results[stage] = fit(stage_plan)
        previous = results[stage]["last_checkpoint"]
    summary = {"experiment": plan.config.run.experiment, "run_dir": str(plan.run_dir), "stages": results}
    if rank() == 0:
        (plan.run_dir / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return summary


def print_pipeline(summary: dict) -> None:
    print(f"\nPipeline finished: {summary['run_dir']}")
    width = max(16, *(len(stage) + 2 for stage in summary["stages"]))
    print(f"{'stage':<{width}}{'objective':<12}{'steps':>8}{'val/mIoU':>12}  run directory")
    for stage, s in summary["stages"].items():
        miou = s["final"].get("val/mIoU", float("nan"))
        print(f"{stage:<{width}}{s.get('objective', '?'):<12}{s['global_step']:>8}{miou:>12.4f}  "
              f"{s['run_dir']}")


# ------------------------------------------------------------------------------------------------ entry


def train(experiment: str, overrides: list[str]) -> dict:
    """``lseg-pacl train EXP k=v ...``: plan once, then run the experiment, or each stage of a pipeline."""
    plan = plan_run(experiment, overrides, Launch.from_environ())
    with published(plan.run_dir, plan.run_id):  # for the ranks the Trainer launches after this one
        if plan.is_pipeline:
            summary, report = run_pipeline(plan, overrides), print_pipeline
        else:
            summary, report = fit(plan), print_summary
        if rank() == 0:  # under DDP, one report
            report(summary)
        _leave_process_group()  # on success only: a failing rank must exit, not wait at a barrier
    return summary


def _leave_process_group() -> None:
    """Under DDP, wait for every rank and close the group: a rank exiting inside gloo aborts the others."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
