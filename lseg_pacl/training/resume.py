"""Continuing a run: which directory and checkpoint a resume takes, and which config changes it allows."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from lseg_pacl.config.loading import saved_with_overrides
from lseg_pacl.errors import ConfigError, MissingInputError
from lseg_pacl.training.checkpointing import LAST, checkpoints_by_step, resume_checkpoint

log = logging.getLogger(__name__)

# What a resumed run may change: how long it trains, how it validates and logs, where it writes. Anything else
# (model, data, seed, optimizer, devices, workers, precision, accumulation) is refused: it would change what
# the checkpoint was trained on, fail to restore (optimizer state, a stream's per-worker position), or be
# overwritten by the restored state without effect (learning rates).
RESUME_MAY_CHANGE = (
    "trainer.max_steps",
    "trainer.max_epochs",
    "trainer.val_check_interval",
    "trainer.check_val_every_n_epoch",
    "trainer.limit_val_batches",
    "trainer.num_sanity_val_steps",
    "trainer.log_every_n_steps",
    "trainer.enable_progress_bar",
    "logger.",
    "eval.",
    "run.",
    "resume",
    "description",
    "base",
    "data.val_batch_size",
    "data.val.",
    "data.max_bad_fraction",
    "optim.max_nonfinite_steps",
    "stall.",
)


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        return {k: v for key, value in node.items() for k, v in _flat(value, f"{prefix}{key}.").items()} or {
            prefix[:-1]: {}
        }
    return {prefix[:-1]: node}


def resume_changes(saved: DictConfig, now: DictConfig) -> tuple[list[str], list[str]]:
    """(refused, allowed): the keys whose values differ between a run's saved config and its resumed one."""
    a = _flat(OmegaConf.to_container(saved, resolve=False))
    b = _flat(OmegaConf.to_container(now, resolve=False))
    changed = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    allowed = [k for k in changed if k.startswith(RESUME_MAY_CHANGE)]
    return [k for k in changed if k not in allowed], allowed


def without_resume(overrides: list[str]) -> list[str]:
    return [o for o in overrides if not o.split("=", 1)[0].strip() == "resume"]


def checked_resume(saved: DictConfig, overrides: list[str], where: Path) -> DictConfig:
    """The saved config with this launch's overrides; an error listing the keys that would change the model or
    the data under a checkpoint made with others (harmless ones, e.g. trainer.max_steps, are logged)."""
    resumed = saved_with_overrides(saved, without_resume(overrides))
    refused, allowed = resume_changes(saved, resumed)
    if refused:
        raise ConfigError(
            f"resuming {where} with a different "
            + ", ".join(
                f"{k} ({OmegaConf.select(saved, k)!r} -> {OmegaConf.select(resumed, k)!r})" for k in refused
            )
            + ": these change the model or the data its checkpoint was trained on; start a new run instead"
        )
    if allowed:
        log.info("resuming %s with changed %s", where, ", ".join(allowed))
    return resumed


# ------------------------------------------------------------------------------------------------ run
# directories


def has_checkpoint(run_dir: Path) -> bool:
    folder = run_dir / "checkpoints"
    return bool(checkpoints_by_step(folder)) or (folder / LAST).is_file()


def has_progress(run_dir: Path) -> bool:
    """A run (or a pipeline stage of it) that saved a checkpoint or finished."""
    return (
        has_checkpoint(run_dir)
        or any(has_checkpoint(p.parent) for p in run_dir.glob("*/config.yaml"))
        or any(run_dir.glob("*/summary.json"))
    )


def checkpoint_to_resume(run_dir: Path) -> Path:
    """The newest intact checkpoint of a run (checkpointing.py); an error when there is none."""
    folder = run_dir / "checkpoints"
    found = resume_checkpoint(folder)
    if found is not None:
        return found
    if (folder / LAST).is_file() and not checkpoints_by_step(
        folder
    ):  # written before checkpoints had manifests
        log.warning("resuming from %s, which has no manifest to verify it against", folder / LAST)
        return folder / LAST
    raise MissingInputError(f"nothing to resume in {run_dir}: no intact checkpoint in {folder}")


def newest_run(root: Path) -> Path | None:
    runs = [p.parent for p in root.glob("*/config.yaml") if has_progress(p.parent)] if root.is_dir() else []
    return max(runs, key=lambda p: (p / "config.yaml").stat().st_mtime) if runs else None


def run_to_resume(resume: str, experiment: str, experiment_root: Path) -> Path:
    """The run directory ``resume=`` names (a folder, or "last"); an error (never a fresh start) without
    one."""
    if resume == "last":
        found = newest_run(experiment_root)
        if found is None:
            raise MissingInputError(
                f"resume=last: no run of '{experiment}' with a checkpoint under {experiment_root}"
            )
        return found
    run_dir = Path(resume).expanduser()
    if not (run_dir / "config.yaml").is_file():
        raise MissingInputError(f"resume={resume}: {run_dir} is not a run directory (no config.yaml)")
    return run_dir
