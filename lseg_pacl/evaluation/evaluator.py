"""Evaluating a model on one benchmark under the eval.* protocol, at each image's original label resolution:
the metric, the skipped images, and (as asked) predictions, panels and PACL's diagnostics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from PIL import Image
from torch.utils.data import DataLoader

from data_modules.bad_samples import EVENTS, DataQualityError, SkipCounter
from data_modules.segmentation import SegmentationSet, collate_segmentation
from data_modules.transforms import normalize_transform
from lseg_pacl.errors import BadDataError, MissingInputError
from lseg_pacl.evaluation.diagnostics import Diagnostics
from lseg_pacl.evaluation.inference import infer
from lseg_pacl.evaluation.metrics import SegmentationScore, report
from lseg_pacl.evaluation.pictures import save_panel, wandb_masks
from lseg_pacl.evaluation.settings import autocast_for, label_set_for, protocol_for, settings_record
from lseg_pacl.models.prompts import templates
from lseg_pacl.objectives.base import ZeroShotObjective


def denormalised(image: torch.Tensor, module: ZeroShotObjective) -> np.ndarray:
    """[1, 3, H, W] normalised input -> [H, W, 3] uint8 as it was read."""
    std = torch.tensor(module.input_std)[:, None, None]
    mean = torch.tensor(module.input_mean)[:, None, None]
    return (image[0].float().cpu() * std + mean).clamp(0, 1).mul(255).byte().permute(1, 2, 0).numpy()


def _diagnostics(cfg: DictConfig, module: ZeroShotObjective) -> Diagnostics | None:
    if not cfg.eval.analysis:
        return None
    views = {"model": (module.dense_embeddings, module.dense_grid)}
    if hasattr(module, "embedder"):  # PACL: show the frozen CLIP's own features beside the trained ones
        views["clip"] = (module.clip.dense_features, module.clip.grid)
    return Diagnostics(views, list(cfg.eval.analysis), cfg.eval.coherence_pairs)


def _count(skips: SkipCounter, batch: dict | None = None) -> None:
    """Count a batch's skipped images (or, without one, check the totals): too many stop the evaluation."""
    try:
        skips.add(int("image" in batch), batch[EVENTS]) if batch is not None else skips.check()
    except DataQualityError as exc:
        raise BadDataError(str(exc)) from None


def evaluate_benchmark(cfg: DictConfig, module: ZeroShotObjective, name: str, root: Path, out: Path,
                       device: torch.device, wandb_images: list) -> dict:
    e = cfg.eval
    try:
        data = SegmentationSet(
            name,
            root,
            cfg.data.val.split,
            normalize_transform(module.input_mean, module.input_std),
            e.max_images,
        )
    except FileNotFoundError as exc:
        raise MissingInputError(str(exc)) from None
    labels = label_set_for(cfg, name, data.class_names)
    proto = protocol_for(cfg, module.patch_size)
    text = module.clip.class_embeddings(labels.texts, templates(e.templates)).to(device)

    def logits_fn(x: torch.Tensor) -> torch.Tensor:
        return labels.class_logits(module.logits(x, text, tuple(x.shape[-2:])))

    diagnostics = _diagnostics(cfg, module)
    first_names = module.clip.class_embeddings(
        tuple(labels.classes[c][0] for c in labels.scored), templates(e.templates)
    ).to(device)
    metric = SegmentationScore(len(data.class_names)).to(device)
    skips = SkipCounter(cfg.data.max_bad_fraction, f"eval {name}")
    loader = DataLoader(data, batch_size=1, num_workers=cfg.data.num_workers, collate_fn=collate_segmentation)
    pictures = 0
    with torch.no_grad(), autocast_for(cfg, device):
        for index, batch in enumerate(loader):
            _count(skips, batch)
            if "image" not in batch:
                continue
            image, mask = batch["image"].to(device), batch["mask"].to(device)
            pred = labels.predict(infer(logits_fn, image, proto))
            metric.update(pred, mask)
            stem = data.pairs[index].image.stem
            if e.save_predictions:
                target = out / "predictions" / name / f"{stem}.png"
                target.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(pred[0].to(torch.uint8).cpu().numpy(), mode="L").save(target)
            if pictures < e.pictures:
                pictures += 1
                rgb = denormalised(image, module)
                gt, pr = mask[0].cpu().numpy().astype(np.uint8), pred[0].cpu().numpy().astype(np.uint8)
                save_panel(
                    out / "pictures" / name / f"{stem}.png",
                    rgb,
                    gt,
                    pr,
                    data.class_names,
                    title=f"{name} {stem}",
                )
                wandb_images.append((rgb, wandb_masks(gt, pr, data.class_names), f"{name}/{stem}"))
            if diagnostics is not None:
                diagnostics.update(
                    image, mask, first_names, labels.scored, proto.short_side, module.patch_size
                )
    _count(skips)
    result = {
        **report(metric.compute(), data.class_names),
        "images": len(data) - skips.skipped,
        "skipped": skips.skipped,
        "settings": settings_record(cfg, module.cfg, data.split),
    }
    if diagnostics is not None:
        result["analysis"] = diagnostics.result()
    return result
