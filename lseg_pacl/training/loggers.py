"""Where a run's metrics go: metrics.csv in the run directory (every logged step, appended to on resume) and,
unless disabled, Weights & Biases (offline by default; the API key only ever comes from the environment)."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig

from data_modules.ranks import rank
from lseg_pacl.errors import MissingInputError

WANDB_MODES = ("offline", "online", "disabled")


class RunCSVLogger(Logger):
    """metrics.csv directly in the run directory: one row per logged step, columns sorted by name; a column
    that appears later rewrites the file with the wider header. A resumed run appends (Lightning's own CSV
    logger would delete the file)."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__()
        self.path = Path(run_dir) / "metrics.csv"
        self.rows: list[dict[str, Any]] = []
        self.keys: list[str] = []
        if self.path.is_file():
            with open(self.path, newline="") as file:
                self.keys = list(next(csv.reader(file), []))

    @property
    def name(self) -> str:
        return ""

    @property
    def version(self) -> str:
        return ""

    @property
    def save_dir(self) -> str:
        return str(self.path.parent)

    def log_hyperparams(self, params: Any = None, *args: Any, **kwargs: Any) -> None:
        """The config is already in config.yaml; no second copy."""

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        if rank() != 0:
            return
        row = {k: v.item() if isinstance(v, torch.Tensor) else v for k, v in metrics.items()}
        row["step"] = len(self.rows) if step is None else step
        self.rows.append(row)  # written by save(), which Lightning calls after every log_metrics

    def save(self) -> None:
        if rank() != 0 or not self.rows:
            return
        new = set().union(*self.rows) - set(self.keys)
        exists = self.path.is_file()
        self.keys = sorted({*self.keys, *new})
        if new and exists:  # a wider header: rewrite what is there under it
            with open(self.path, newline="") as file:
                old = list(csv.DictReader(file))
            self._write("w", old)
        self._write("a" if self.path.is_file() else "w", self.rows)
        self.rows = []

    def _write(self, mode: str, rows: list[dict[str, Any]]) -> None:
        os.makedirs(self.path.parent, exist_ok=True)
        with open(self.path, mode, newline="") as file:
            writer = csv.DictWriter(file, fieldnames=self.keys)
            if mode == "w":
                writer.writeheader()
            writer.writerows(rows)

    def finalize(self, status: str) -> None:
        self.save()


def _wandb_key_available() -> bool:
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    return bool(os.environ.get("WANDB_API_KEY")) or (
        netrc.is_file() and "wandb" in netrc.read_text(errors="ignore")
    )


def build_loggers(cfg: DictConfig, run_dir: Path) -> list[Logger]:
    loggers: list[Logger] = [RunCSVLogger(run_dir)]
    w = cfg.logger.wandb
    if w.mode == "online" and not _wandb_key_available():
        raise MissingInputError(
            "logger.wandb.mode=online needs a W&B API key: set WANDB_API_KEY in the environment "
            "or run `wandb login` (or use logger.wandb.mode=offline and `wandb sync` later)"
        )
    if w.mode != "disabled":
        from lightning.pytorch.loggers import WandbLogger

        loggers.append(
            WandbLogger(
                project=w.project,
                entity=w.entity,
                id=cfg.run.id,
                name=f"{cfg.run.experiment}/{cfg.run.id}",
                save_dir=str(run_dir),
                mode=w.mode,
                resume="allow",
                tags=list(w.tags),
                log_model=False,
            )
        )
    return loggers
