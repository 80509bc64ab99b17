"""What the eval.* section of a config asks for, turned into the objects evaluation runs with: the device and
its precision, the inference protocol, each benchmark's label set, and the record of settings a result
carries, with the protocol fingerprint (the settings that can change a number, and their short hash).

Every function takes the eval section as it applies to one benchmark (``config.loading.eval_for``): a preset
may set other values per benchmark.
"""

from __future__ import annotations

import contextlib
import hashlib
import json

import torch
from omegaconf import DictConfig

from data_modules.benchmarks import benchmark
from data_modules.name_sets import NAME_SETS, name_file
from lseg_pacl.errors import ConfigError
from lseg_pacl.evaluation.inference import Protocol
from lseg_pacl.evaluation.labels import LabelSet, read_synonyms

PRECISIONS = ("fp32", "fp16", "bf16")


def device_for(cfg: DictConfig) -> torch.device:
    if cfg.trainer.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def precision_for(cfg: DictConfig, e: DictConfig, device: torch.device) -> str:
    """fp32 | fp16 | bf16 as it will run: eval.precision, else trainer.precision; fp16 only on CUDA (the
    official code's fp16 is a CUDA path; on the CPU it runs fp32 as the official code does there)."""
    wanted = e.precision
    if wanted is None:
        p = str(cfg.trainer.precision)
        wanted = "bf16" if p.startswith("bf16") else "fp16" if p.startswith("16") else "fp32"
    return "fp32" if wanted == "fp16" and device.type != "cuda" else wanted


def autocast_for(precision: str, device: torch.device):
    """Autocast for a precision from ``precision_for``: fp16 autocast keeps LayerNorm and softmax in fp32, as
    the OpenAI CLIP code's fp16 weights do (its LayerNorm computes in fp32)."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    if precision == "fp16":
        return torch.autocast(device_type="cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def protocol_for(e: DictConfig, patch: int, fallback_side: int | None = None) -> Protocol:
    try:
        return Protocol(
            mode=e.mode,
            short_side=e.short_side or fallback_side,
            resize=e.resize,
            crop=e.crop,
            stride=e.stride,
            scales=tuple(e.scales),
            flip=e.flip,
            patch=patch,
            remainder=e.remainder,
            resize_backend=e.resize_backend,
            pamr_iterations=e.pamr_iterations,
            pamr_dilations=tuple(e.pamr_dilations),
        )
    except ValueError as exc:
        raise ConfigError(f"eval: {exc}") from None


def names_for(e: DictConfig, name: str, class_names: tuple[str, ...]) -> tuple[tuple[str, ...] | str, str]:
    """(each class's names, where they come from): eval.class_names.<benchmark>, else the eval.names set's
    file for it, else the benchmark's own list."""
    own = e.class_names.get(name) if e.class_names else None
    shipped = name_file(e.names, name)
    path, separator = (own, ",") if own else (shipped, NAME_SETS[e.names].separator if shipped else ",")
    if path is None:
        return class_names, "default"
    try:
        return read_synonyms(path, len(class_names), separator), str(path) if own else f"{e.names}:{name}"
    except ValueError as exc:
        raise ConfigError(f"class names for {name}: {exc}") from None


def label_set_for(e: DictConfig, name: str, class_names: tuple[str, ...]) -> LabelSet:
    names, _ = names_for(e, name, class_names)
    return LabelSet.of(
        names,
        background_index=benchmark(name).background_index,
        rule=e.background,
        scale=e.logit_scale,
        threshold=e.bg_threshold,
        entropy=e.bg_entropy,
        area=e.bg_area,
    )


def names_digest(labels: LabelSet) -> str:
    return hashlib.sha256(json.dumps(labels.classes).encode()).hexdigest()[:12]


def fingerprint(e: DictConfig, name: str, labels: LabelSet, proto: Protocol, precision: str, split: str,
                pos_embed: str, names_source: str) -> dict:
    """The settings that can change a number on this benchmark (irrelevant ones left out, so that they do not
    split a table column), and ``hash``: 8 hex digits of them."""
    bench = benchmark(name)
    background = labels.background_index is not None
    rule = labels.rule if background else "argmax"  # without a background class every rule is the argmax
    # the probabilities matter only where a threshold reads them (the softmax is monotonic otherwise)
    thresholded = background and (rule in ("threshold", "entropy")
                                  or (rule == "softmax" and labels.threshold > 0))
    protocol = {
        "benchmark": name,
        "split": split,
        "labels": f"{len(labels.classes)} classes, ignore {getattr(bench, 'ignore_index', 255)}",
        "short_side": proto.short_side,
        "resize": f"{proto.resize} side, {proto.resize_backend}",
        "mode": f"slide {proto.crop}/{proto.stride}" if proto.mode == "slide" else proto.mode,
        "scales": list(proto.scales),
        "flip": proto.flip,
        "remainder": proto.remainder,
        "pos_embed": pos_embed,
        "templates": e.templates,
        "names": names_source,
        "names_sha256": names_digest(labels),
        "background": rule,
        "logit_scale": labels.scale if thresholded else None,
        "bg_threshold": labels.threshold if background and rule in ("threshold", "softmax") else None,
        "bg_area": labels.area if background and rule == "softmax" else None,
        "bg_entropy": labels.entropy if background and rule == "entropy" else None,
        "pamr": f"{proto.pamr_iterations} x {list(proto.pamr_dilations)}" if proto.pamr_iterations else "off",
        "precision": precision,
    }
    digest = hashlib.sha256(json.dumps(protocol, sort_keys=True).encode()).hexdigest()[:8]
    return {"protocol": protocol, "protocol_hash": digest}


def settings_record(cfg: DictConfig, e: DictConfig, model_cfg: DictConfig, split: str) -> dict:
    """What produced a result: the model as built (from its own config), the row label and the protocol."""
    m = model_cfg.model
    variant = m.clip.last_block
    model = f"{m.objective}: {m.clip.name}" + (f" ({variant})" if variant != "plain" else "")
    return {
        "ckpt": cfg.eval.ckpt,
        "model": model,
        "method": cfg.eval.method or cfg.run.experiment,
        "preset": cfg.eval.preset,
        "split": split,
        "templates": e.templates,
        "names": e.names,
        "mode": e.mode,
        "short_side": e.short_side or cfg.data.val.image_size,
        "resize": e.resize,
        "resize_backend": e.resize_backend,
        "crop": e.crop,
        "stride": e.stride,
        "scales": list(e.scales),
        "flip": e.flip,
        "remainder": e.remainder,
        "background": e.background,
        "bg_threshold": e.bg_threshold,
        "bg_area": e.bg_area,
        "bg_entropy": e.bg_entropy,
        "logit_scale": e.logit_scale,
        "pamr_iterations": e.pamr_iterations,
        "pamr_dilations": list(e.pamr_dilations),
    }
