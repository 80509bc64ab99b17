"""LightningModules, one per objective, and loading one back from a checkpoint alone."""

from __future__ import annotations

from pathlib import Path

import torch

from lseg_pacl.errors import MissingInputError
from lseg_pacl.objectives.base import ZeroShotObjective
from lseg_pacl.objectives.clip_contrastive import ClipContrastive
from lseg_pacl.objectives.lseg import LSeg
from lseg_pacl.objectives.pacl import Pacl

OBJECTIVES: dict[str, type[ZeroShotObjective]] = {"clip": ClipContrastive, "pacl": Pacl, "lseg": LSeg}


def build_objective(config: dict) -> ZeroShotObjective:
    return OBJECTIVES[config["model"]["objective"]](config)


def load_objective(ckpt: str | Path) -> ZeroShotObjective:
    """Rebuild a module from one of our checkpoints with no other argument (its config is inside)."""
    path = Path(ckpt).expanduser()
    if not path.is_file():
        raise MissingInputError(f"checkpoint {path} does not exist")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise MissingInputError(f"{path} is not a readable checkpoint ({type(exc).__name__}: {exc})") from None
    config = blob.get("hyper_parameters", {}).get("config") if isinstance(blob, dict) else None
    if not config:
        raise MissingInputError(f"{path} is not a lseg_pacl checkpoint (no config in its hyperparameters)")
    cls = OBJECTIVES[config["model"]["objective"]]
    module = cls(config, load_pretrained=False)
    module.load_state_dict(blob["state_dict"])
    return module
