"""LightningModules, one per training objective, registered by name; building one from a run's plan, and
loading one back from a checkpoint alone."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from lseg_pacl.errors import MissingInputError
from lseg_pacl.models.inputs import InputSpec
from lseg_pacl.models.lseg_official import is_official_lseg, official_lseg, read_checkpoint_file
from lseg_pacl.models.weights import own_checkpoint
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


def read_any_checkpoint(path: Path) -> dict:
    """A checkpoint's contents, tensors and plain containers only (ours, or an official lang-seg file)."""
    if not path.is_file():
        raise MissingInputError(f"checkpoint {path} does not exist")
    try:
        return read_checkpoint_file(path)
    except Exception as exc:  # noqa: BLE001 - whatever the reason, say it with the file's name
        why = f"{type(exc).__name__}: {exc}"
        raise MissingInputError(f"{path} is not a readable checkpoint ({why})") from None


def load_objective(
    ckpt: str | Path, last_block: str | None = None, official: Mapping[str, Any] | None = None
) -> ZeroShotObjective:
    """Rebuild a module from one of our checkpoints with no other argument (its config is inside), or from
    an official lang-seg checkpoint as it is (models/lseg_official.py; ``official``: the model.lseg values its
    keys cannot tell, spatial_reg/block_depth/activation, needed only for a file with a spatial block);
    ``last_block`` builds it with a training-free last vision block instead of its own
    (models/last_block.py)."""
    path = Path(ckpt).expanduser()
    blob = read_any_checkpoint(path)
    if is_official_lseg(blob):
        config, state = official_lseg(blob, official, where=str(path))
        blob = {"hyper_parameters": {"config": config}, "state_dict": state}
    blob = own_checkpoint(blob, path)
    config = blob["hyper_parameters"]["config"]
    if last_block is not None:
        config = {
            **config,
            "model": {**config["model"], "clip": {**config["model"]["clip"], "last_block": last_block}},
        }
    module = OBJECTIVES[config["model"]["objective"]](config, load_pretrained=False)
    module.load_state_dict(blob["state_dict"])
    return module
