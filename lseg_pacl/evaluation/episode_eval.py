"""``lseg-pacl eval`` on an episode benchmark (LSeg's zero-shot protocol, docs/evaluation.md#episodes): every
test episode of data.fold, each image scored 2-way against ["others", its class] at the episode size, single
scale, argmax; the mean foreground IoU over the fold's classes and FB-IoU, as the official evaluation computes
them (lseg_pacl/evaluation/episodes.py)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from data_modules.bad_samples import SkipCounter
from data_modules.episodes.folds import class_names, fold_classes
from data_modules.segmentation import collate_segmentation
from data_modules.workers import worker_options
from lseg_pacl.evaluation.episodes import EpisodeMeter
from lseg_pacl.evaluation.evaluator import bounded_waits, count_skips
from lseg_pacl.evaluation.settings import autocast_for, precision_for
from lseg_pacl.objectives.base import OTHERS, ZeroShotObjective
from lseg_pacl.training.inputs import episode_set


def episode_key(name: str, fold: int) -> str:
    """The results entry of one episode benchmark's fold (e.g. ``pascal5i/fold2``)."""
    return f"{name}/fold{fold}"


def evaluate_episodes(
    cfg: DictConfig, module: ZeroShotObjective, name: str, root: Path, device: torch.device
) -> dict:
    """One result entry (the keys results.json holds for every benchmark, plus FB-IoU and the episode
    count)."""
    fold = int(cfg.data.fold)
    data = episode_set(cfg, name, root, "test", module.input_mean, module.input_std)
    names = class_names(name)
    classes = fold_classes(name, fold, "test")
    meter = EpisodeMeter(classes, len(names))
    precision = precision_for(cfg, cfg.eval, device)
    skips = SkipCounter(cfg.data.max_bad_fraction, f"eval {name} fold {fold}")
    workers = cfg.data.num_workers
    loader = DataLoader(
        data,
        batch_size=cfg.data.val_batch_size,
        num_workers=workers,
        collate_fn=collate_segmentation,
        **worker_options(workers),
    )
    bound = cfg.stall.data_timeout
    with torch.no_grad(), autocast_for(precision, device), bounded_waits(name, bound) as deadline:
        texts = module.episode_texts(names).to(device)
        deadline.beat("waiting for the first episode", bound, "stall.data_timeout")
        for index, batch in enumerate(loader):
            deadline.beat(f"scoring episode batch {index}", None)
            count_skips(skips, batch)
            if "image" not in batch:
                continue
            target = batch["target"].to(device)
            class_id = batch["class_id"].to(device)
            logits = module.episode_logits(
                batch["image"].to(device), class_id, texts, tuple(target.shape[-2:])
            )
            meter.update(logits.argmax(1).cpu(), target.cpu(), class_id.cpu())
            deadline.beat(f"waiting for episode batch {index + 1}", bound, "stall.data_timeout")
    count_skips(skips)
    scores = meter.compute()
    per_class = meter.per_class()
    settings = {
        "model": cfg.eval.method or cfg.model.objective,
        "templates": cfg.eval.templates,
        "mode": "episodes",
        "short_side": cfg.data.episodes.size,
        "crop": None,
        "stride": None,
        "scales": [1.0],
        "flip": False,
        "fold": fold,
        "precision": precision,
    }
    protocol = {
        "episodes": name,
        "fold": fold,
        "size": cfg.data.episodes.size,
        "count": len(data),
        "texts": [OTHERS, "<class>"],
        "templates": cfg.eval.templates,
        "precision": precision,
    }
    return {
        "mIoU": scores["miou"] / 100.0,
        "FB-IoU": scores["fb_iou"] / 100.0,
        "aAcc": None,
        "per_class": {names[c]: per_class[c] / 100.0 for c in classes},
        "images": skips.seen - skips.skipped,
        "skipped": skips.skipped,
        "settings": settings,
        "protocol": protocol,
        "protocol_hash": hashlib.sha1(json.dumps(protocol, sort_keys=True).encode()).hexdigest()[:10],
    }
