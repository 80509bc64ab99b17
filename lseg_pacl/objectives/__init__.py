"""LightningModules, one per training objective, registered by name; building one from a run's plan, and
loading one back from a checkpoint alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from lseg_pacl.models.inputs import InputSpec
from lseg_pacl.models.weights import read_checkpoint
from lseg_pacl.objectives.base import ZeroShotObjective
from lseg_pacl.objectives.clip_contrastive import ClipContrastive
from lseg_pacl.objectives.lseg import LSeg
from lseg_pacl.objectives.pacl import Pacl

OBJECTIVES: dict[str, type[ZeroShotObjective]] = {"clip": ClipContrastive, "pacl": Pacl, "lseg": LSeg}


def input_spec(cfg: DictConfig) -> InputSpec:
    """The images the configured objective's encoder takes (known before it is built)."""
    return OBJECTIVES[cfg.model.objective].input_spec(cfg)


def build_objective(config: dict, **inputs: Any) -> ZeroShotObjective:
    """The configured objective with what the run's plan gives it (benchmarks=, and train_classes= for LSeg or
    feature_cache= for PACL)."""
    return OBJECTIVES[config["model"]["objective"]](config, **inputs)


def load_objective(ckpt: str | Path, last_block: str | None = None) -> ZeroShotObjective:
    """Rebuild a module from one of our checkpoints with no other argument (its config is inside);
    ``last_block`` builds it with a training-free last vision block instead of its own
    (models/last_block.py)."""
    blob = read_checkpoint(Path(ckpt).expanduser())
    config = blob["hyper_parameters"]["config"]
    if last_block is not None:
        config = {
            **config,
            "model": {**config["model"], "clip": {**config["model"]["clip"], "last_block": last_block}},
        }
    module = OBJECTIVES[config["model"]["objective"]](config, load_pretrained=False)
    module.load_state_dict(blob["state_dict"])
    return module
