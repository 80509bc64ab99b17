"""What the eval.* section of a config asks for, turned into the objects evaluation runs with: the device and
its autocast, the inference protocol, each benchmark's label set, and the record of settings a result
carries."""

from __future__ import annotations

import contextlib

import torch
from omegaconf import DictConfig

from data_modules.benchmarks import benchmark
from lseg_pacl.errors import ConfigError
from lseg_pacl.evaluation.inference import Protocol
from lseg_pacl.evaluation.labels import LabelSet, read_synonyms


def device_for(cfg: DictConfig) -> torch.device:
    if cfg.trainer.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def autocast_for(cfg: DictConfig, device: torch.device):
    if str(cfg.trainer.precision).startswith("bf16"):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    if str(cfg.trainer.precision).startswith("16") and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def protocol_for(cfg: DictConfig, patch: int) -> Protocol:
    e = cfg.eval
    return Protocol(
        mode=e.mode,
        short_side=e.short_side or cfg.data.val.image_size,
        resize=e.resize,
        crop=e.crop,
        stride=e.stride,
        scales=tuple(e.scales),
        flip=e.flip,
        patch=patch,
    )


def label_set_for(cfg: DictConfig, name: str, class_names: tuple[str, ...]) -> LabelSet:
    e = cfg.eval
    try:
        names = read_synonyms(e.class_names[name], len(class_names)) if name in e.class_names else class_names
    except ValueError as exc:
        raise ConfigError(f"eval.class_names.{name}: {exc}") from None
    return LabelSet.of(
        names,
        background_index=benchmark(name).background_index,
        rule=e.background,
        scale=e.logit_scale,
        threshold=e.bg_threshold,
        entropy=e.bg_entropy,
    )


def settings_record(cfg: DictConfig, model_cfg: DictConfig, split: str) -> dict:
    """What produced a result: the model as built (from its own config) and the protocol."""
    e, m = cfg.eval, model_cfg.model
    variant = m.clip.last_block
    model = f"{m.objective}: {m.clip.name}" + (f" ({variant})" if variant != "plain" else "")
    return {
        "ckpt": e.ckpt,
        "model": model,
        "split": split,
        "templates": e.templates,
        "mode": e.mode,
        "short_side": e.short_side or cfg.data.val.image_size,
        "resize": e.resize,
        "crop": e.crop,
        "stride": e.stride,
        "scales": list(e.scales),
        "flip": e.flip,
        "background": e.background,
        "bg_threshold": e.bg_threshold,
        "bg_entropy": e.bg_entropy,
        "logit_scale": e.logit_scale,
    }
