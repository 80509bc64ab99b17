"""Evaluating models on one benchmark under their eval.* protocols, at each image's original label resolution:
the metric, the skipped images, the protocol fingerprint and (as asked) predictions, panels and PACL's
diagnostics.

Several models can be evaluated in one pass over the data (``Member`` each). Members that are training-free
rows (lseg_pacl/methods/) of one CLIP under one image protocol are evaluated together: each window runs
CLIP's blocks 1..L-1 once, keeping what any of the rows reads, then each row's own part; every member gets
exactly the logits it would get alone (tests).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from PIL import Image
from torch.utils.data import DataLoader

from data_modules.bad_samples import EVENTS, DataQualityError, SkipCounter, batch_size_of
from data_modules.segmentation import SegmentationSet, collate_segmentation
from data_modules.transforms import centre_crop_transform, normalize_transform, uint8_transform
from data_modules.workers import worker_options
from lseg_pacl.config.loading import eval_for
from lseg_pacl.deadline import Deadline, StallInterrupt
from lseg_pacl.errors import BadDataError, ConfigError, MissingInputError, Stalled
from lseg_pacl.evaluation.diagnostics import Diagnostics
from lseg_pacl.evaluation.inference import Protocol, infer
from lseg_pacl.evaluation.labels import LabelSet
from lseg_pacl.evaluation.metrics import SegmentationScore, report
from lseg_pacl.evaluation.pictures import save_panel, wandb_masks
from lseg_pacl.evaluation.settings import (
    autocast_for,
    fingerprint,
    label_set_for,
    names_for,
    precision_for,
    protocol_for,
    settings_record,
)
from lseg_pacl.methods import TrainingFreeMethod, build_method
from lseg_pacl.models.last_block import VARIANTS
from lseg_pacl.models.prompts import templates
from lseg_pacl.models.trunk import NOTHING
from lseg_pacl.objectives.base import ZeroShotObjective


@dataclass
class Member:
    """One model to score: its experiment's config, the built module, where its outputs go, and (training-free
    rows sharing a CLIP) the method it runs on the group's module."""

    cfg: DictConfig
    module: ZeroShotObjective
    out: Path
    method: str | None = None  # a training-free method (methods/) on the module's CLIP; None: its own logits
    wandb_images: list = field(default_factory=list)


def protocol_key(cfg: DictConfig, name: str, patch: int, device: torch.device) -> tuple:
    """What must agree for members to share images and windows on a benchmark."""
    e = eval_for(cfg.eval, name)
    proto = protocol_for(e, patch, cfg.data.val.image_size)
    return proto, precision_for(cfg, e, device), cfg.data.val.split, e.max_images


def denormalised(image: torch.Tensor, module: ZeroShotObjective) -> np.ndarray:
    """[1, 3, H, W] normalised input -> [H, W, 3] uint8 as it was read."""
    std = torch.tensor(module.input_std)[:, None, None]
    mean = torch.tensor(module.input_mean)[:, None, None]
    return (image[0].float().cpu() * std + mean).clamp(0, 1).mul(255).byte().permute(1, 2, 0).numpy()


def _diagnostics(cfg: DictConfig, module: ZeroShotObjective, block: str | None) -> Diagnostics | None:
    """PACL's diagnostics of the member's own dense features (a shared CLIP's: through the member's last
    block)."""
    if not cfg.eval.analysis:
        return None
    def own(x: torch.Tensor) -> torch.Tensor:
        return module.clip.dense_features_many(x, [block])[0]

    dense = module.dense_embeddings if block is None else own
    if block is not None and block not in VARIANTS:
        raise ConfigError(f"eval.analysis reads dense features; the {block} method has none (it needs the "
                          f"text at every window): evaluate it without analysis")
    views = {"model": (dense, module.dense_grid)}
    if hasattr(module, "embedder"):  # PACL: show the frozen CLIP's own features beside the trained ones
        views["clip"] = (module.clip.dense_features, module.clip.grid)
    return Diagnostics(views, list(cfg.eval.analysis), cfg.eval.coherence_pairs)


def count_skips(skips: SkipCounter, batch: dict | None = None) -> None:
    """Count a batch's skipped images (or, without one, check the totals): too many stop the evaluation."""
    try:
        skips.add(batch_size_of(batch), batch[EVENTS]) if batch is not None else skips.check()
    except DataQualityError as exc:
        raise BadDataError(str(exc)) from None


@dataclass
class _Scored:
    """A member's state on one benchmark."""

    member: Member
    e: DictConfig
    labels: LabelSet
    method: TrainingFreeMethod | None
    text: torch.Tensor
    channels: int
    metric: SegmentationScore
    record: dict
    diagnostics: Diagnostics | None
    first_names: torch.Tensor | None
    pictures: int = 0


def _scored(member: Member, name: str, data: SegmentationSet, proto: Protocol, precision: str,
            device: torch.device) -> _Scored:
    cfg, module = member.cfg, member.module
    e = eval_for(cfg.eval, name)
    labels = label_set_for(e, name, data.class_names)
    _, source = names_for(e, name, data.class_names)
    text = module.clip.class_embeddings(labels.texts, templates(e.templates)).to(device)
    channels = len(labels.texts) if labels.per_text else len(labels.scored)
    diagnostics = _diagnostics(cfg, module, member.method)
    method = None
    if member.method is not None:
        try:
            method = build_method(member.method, OmegaConf.to_container(e.method_options))
        except ValueError as exc:
            raise ConfigError(f"{name}: eval.method_options: {exc}") from None
    first_names = None
    if diagnostics is not None:
        first_names = module.clip.class_embeddings(
            tuple(labels.classes[c][0] for c in labels.scored), templates(e.templates)
        ).to(device)
    pos_embed = module.cfg.model.clip.pos_embed
    record = {
        **settings_record(cfg, e, module.cfg, data.split),
        **fingerprint(e, name, labels, proto, precision, data.split, pos_embed, source),
    }
    if member.method is not None:
        record["model"] = f"clip: {module.cfg.model.clip.name}" + (
            f" ({member.method})" if member.method != "plain" else "")
        record["method_options"] = dict(method.options)
    metric = SegmentationScore(len(data.class_names), ignore_index=data.ignore_index).to(device)
    return _Scored(member, e, labels, method, text, channels, metric, record, diagnostics, first_names)


def _logits_fn(states: Sequence[_Scored]):
    """Every member's window logits, concatenated along channels: for training-free rows the shared trunk runs
    once per window (keeping what any row reads); a lone trained member runs its own module."""
    module = states[0].member.module
    needs = NOTHING
    for s in states:
        needs = needs | s.method.needs() if s.method is not None else needs

    def fn(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        if states[0].method is None:
            s = states[0]
            return s.labels.window_logits(module.logits(x, s.text, size))
        trunk = module.clip.trunk(x, needs)
        return torch.cat([s.labels.window_logits(s.method.logits(module.clip, trunk, x, s.text, size))
                          for s in states], 1)

    return fn


def _refine_fn(states: Sequence[_Scored]):
    """The members' image-level steps on their own channels (None when no member has one)."""
    if not any(s.method is not None and s.method.refines for s in states):
        return None

    def refine(guide: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        out, start = [], 0
        for s in states:
            part = logits[:, start : start + s.channels]
            start += s.channels
            if s.method is not None and s.method.refines:
                if part.shape[1] != len(s.labels.texts):  # synonyms already merged per window
                    raise ConfigError(f"{s.member.method} refines per-text logits: with synonyms, use "
                                      f"eval.background=softmax (it keeps texts apart until the end)")
                part = s.method.refine(guide, part, s.text)
            out.append(part)
        return torch.cat(out, 1)

    return refine


def evaluate_benchmark(cfg: DictConfig, module: ZeroShotObjective, name: str, root: Path, out: Path,
                       device: torch.device, wandb_images: list) -> dict:
    """One model on one benchmark."""
    member = Member(cfg, module, out, wandb_images=wandb_images)
    return evaluate_members([member], name, root, device)[0]


def evaluate_members(members: Sequence[Member], name: str, root: Path, device: torch.device) -> list[dict]:
    """Several models on one benchmark in one pass; members with a ``method`` share the first member's module
    (one CLIP) and must agree on the image protocol (``protocol_key``)."""
    first = members[0]
    module = first.module
    proto, precision, split, max_images = protocol_key(first.cfg, name, module.patch_size, device)
    if len(members) > 1 and any(
        m.method is None or m.module is not module
        or protocol_key(m.cfg, name, module.patch_size, device) != (proto, precision, split, max_images)
        for m in members
    ):
        raise ValueError("members evaluated together must be training-free rows of one CLIP under one "
                         "image protocol")
    centre = proto.mode == "centre"
    if centre and not proto.short_side:
        raise ConfigError(f"{name}: eval.mode=centre crops a short_side square: set eval.short_side")
    raw = proto.resize_backend == "cv2" and not centre
    mean, std = module.input_mean, module.input_std
    try:
        transform = (centre_crop_transform(proto.short_side, mean, std) if centre
                     else uint8_transform() if raw else normalize_transform(mean, std))
        data = SegmentationSet(name, root, split, transform, max_images)
    except FileNotFoundError as exc:
        raise MissingInputError(str(exc)) from None
    states = [_scored(m, name, data, proto, precision, device) for m in members]
    fn = _logits_fn(states)
    skips = SkipCounter(first.cfg.data.max_bad_fraction, f"eval {name}")
    workers = first.cfg.data.num_workers
    loader = DataLoader(data, batch_size=1, num_workers=workers, collate_fn=collate_segmentation,
                        **worker_options(workers))
    bound = first.cfg.stall.data_timeout
    with torch.no_grad(), autocast_for(precision, device), bounded_waits(name, bound) as deadline:
        deadline.beat("waiting for the first image", bound, "stall.data_timeout")
        for index, batch in enumerate(loader):
            deadline.beat(f"scoring image {index}", None)
            count_skips(skips, batch)
            if "image" not in batch:
                continue
            image, mask = batch["image"].to(device), batch["mask"].to(device)
            logits = infer(fn, image, proto, (mean, std) if raw else None, _refine_fn(states))
            start = 0
            for s in states:
                pred = s.labels.predict(logits[:, start : start + s.channels])
                start += s.channels
                s.metric.update(pred, mask)
                _outputs(s, name, data, index, image, mask, pred, raw)
                if s.diagnostics is not None:
                    x = image if not raw else (image.float() / 255 - torch.tensor(mean, device=device).view(
                        1, 3, 1, 1)) / torch.tensor(std, device=device).view(1, 3, 1, 1)
                    s.diagnostics.update(x, mask, s.first_names, s.labels.scored, proto.short_side,
                                         module.patch_size, data.ignore_index)
            deadline.beat(f"waiting for image {index + 1}", bound, "stall.data_timeout")
    count_skips(skips)
    results = []
    for s in states:
        result = {
            **report(s.metric.compute(), data.class_names),
            "images": len(data) - skips.skipped,
            "skipped": skips.skipped,
            "settings": s.record,
            "protocol": s.record.pop("protocol"),
            "protocol_hash": s.record.pop("protocol_hash"),
        }
        if s.diagnostics is not None:
            result["analysis"] = s.diagnostics.result()
        results.append(result)
    return results


@contextlib.contextmanager
def bounded_waits(benchmark: str, seconds: float | None) -> Iterator[Deadline]:
    """No image for stall.data_timeout seconds: a stop with its own exit code (76), never a wait without
    end (lseg_pacl/deadline.py)."""
    message = (f"eval {benchmark}: no image from the DataLoader for {seconds} s (stall.data_timeout); the "
               f"data may be on a file system that stopped answering. Raise the bound, or run with "
               f"data.num_workers=0 to see where it waits")

    def hard_exit(why: str) -> None:
        print(f"error: {message} ({why})", file=sys.stderr, flush=True)
        os._exit(Stalled.exit_code)

    deadline = Deadline(lambda reason: None, hard_exit, grace=30.0)
    if seconds:
        deadline.start()
    try:
        yield deadline
    except StallInterrupt:
        raise Stalled(message) from None
    finally:
        deadline.stop()


def _outputs(s: _Scored, name: str, data: SegmentationSet, index: int, image: torch.Tensor,
             mask: torch.Tensor, pred: torch.Tensor, raw: bool) -> None:
    """Saved predictions and panels, as the member's eval.* asks."""
    e, out = s.e, s.member.out
    stem = data.pairs[index].image.stem
    if e.save_predictions:
        target = out / "predictions" / name / f"{stem}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        ids = pred[0].cpu().numpy()
        if data.ignore_index > 255:  # 16-bit benchmarks: 16-bit label PNGs, as `score` reads them
            Image.fromarray(ids.astype(np.uint16)).save(target)
        else:
            Image.fromarray(ids.astype(np.uint8), mode="L").save(target)
    if s.pictures < e.pictures:
        s.pictures += 1
        rgb = image[0].permute(1, 2, 0).cpu().numpy() if raw else denormalised(image, s.member.module)
        gt, pr = mask[0].cpu().numpy(), pred[0].cpu().numpy()
        save_panel(out / "pictures" / name / f"{stem}.png", rgb, gt, pr, data.class_names,
                   title=f"{name} {stem}", ignore_index=data.ignore_index)
        if data.ignore_index == 255:  # W&B stores masks as 8-bit images: panels only for the 16-bit ones
            s.member.wandb_images.append((rgb, wandb_masks(gt, pr, data.class_names), f"{name}/{stem}"))
