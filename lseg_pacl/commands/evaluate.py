"""``lseg-pacl eval``: zero-shot segmentation of a checkpoint (loaded from the checkpoint alone) or of a
training-free model on any set of benchmarks, with the configured protocol (eval.*), at each image's original
label resolution. Writes <run dir>/eval/results.{json,md,csv}, optional predictions, panels and diagnostics.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from data_modules.bad_samples import EVENTS, DataQualityError, SkipCounter
from data_modules.benchmarks import benchmark
from data_modules.segmentation import SegmentationSet, collate_segmentation
from data_modules.transforms import normalize_transform
from lseg_pacl.config.loading import load_config, to_plain
from lseg_pacl.errors import BadDataError, ConfigError, MissingInputError
from lseg_pacl.evaluation.diagnostics import (
    coherence_auroc,
    coherence_pairs,
    patch_accuracy,
    patch_majority_labels,
)
from lseg_pacl.evaluation.inference import Protocol, infer, resize_short_side
from lseg_pacl.evaluation.labels import LabelSet, read_synonyms
from lseg_pacl.evaluation.metrics import SegmentationScore, report
from lseg_pacl.evaluation.pictures import save_panel, wandb_masks
from lseg_pacl.evaluation.report import to_wandb, write_reports
from lseg_pacl.objectives import build_objective, load_objective
from lseg_pacl.models.prompts import templates
from lseg_pacl.training.runner import experiment_root, new_run_id

log = logging.getLogger(__name__)
PATCHES_PER_IMAGE = 64  # patches each image adds to the coherence pool


def _eval_dir(ckpt: str | None, cfg) -> Path:
    if ckpt:
        path = Path(ckpt).expanduser().resolve()
        run_dir = path.parent.parent if path.parent.name == "checkpoints" else path.parent
        return run_dir / "eval"
    return experiment_root(cfg) / f"eval-{new_run_id()}"


def _device(cfg) -> torch.device:
    if cfg.trainer.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def _autocast(cfg, device: torch.device):
    if str(cfg.trainer.precision).startswith("bf16"):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    if str(cfg.trainer.precision).startswith("16") and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def label_set(cfg, name: str, class_names: tuple[str, ...]) -> LabelSet:
    e = cfg.eval
    try:
        names = read_synonyms(e.class_names[name], len(class_names)) if name in e.class_names else class_names
    except ValueError as exc:
        raise ConfigError(f"eval.class_names.{name}: {exc}") from None
    return LabelSet.of(names, background_index=benchmark(name).background_index, rule=e.background,
                       scale=e.logit_scale, threshold=e.bg_threshold, entropy=e.bg_entropy)


def protocol(cfg, patch: int) -> Protocol:
    e = cfg.eval
    return Protocol(mode=e.mode, short_side=e.short_side or cfg.data.val.image_size, resize=e.resize, crop=e.crop,
                    stride=e.stride, scales=tuple(e.scales), flip=e.flip, patch=patch)


def settings(cfg, module, split: str) -> dict:
    """What produced these numbers: the model as built (from the checkpoint's own config) and the protocol."""
    e, m = cfg.eval, module.cfg.model
    variant = module.clip.last_block
    model = f"{m.objective}: {m.clip.name}" + (f" ({variant})" if variant != "plain" else "")
    return {"ckpt": e.ckpt, "model": model, "split": split,
            "templates": e.templates, "mode": e.mode, "short_side": e.short_side or cfg.data.val.image_size,
            "resize": e.resize,
            "crop": e.crop, "stride": e.stride, "scales": list(e.scales), "flip": e.flip,
            "background": e.background, "bg_threshold": e.bg_threshold, "bg_entropy": e.bg_entropy,
            "logit_scale": e.logit_scale}


class Diagnostics:
    """PACL's patch-level accuracy and semantic coherence, accumulated over a benchmark, per feature view."""

    def __init__(self, views: dict, analysis: list[str], max_pairs: int) -> None:
        self.views, self.analysis, self.max_pairs = views, analysis, max_pairs
        self.correct = dict.fromkeys(views, 0)
        self.counted = dict.fromkeys(views, 0)
        self.pool: dict[str, list] = {v: [] for v in views}
        self.generator = torch.Generator().manual_seed(0)

    def update(self, image: torch.Tensor, mask: torch.Tensor, classes: torch.Tensor, scored: list[int],
               short_side: int, patch: int) -> None:
        x = resize_short_side(image, short_side)
        m = torch.nn.functional.interpolate(mask[:, None].float(), size=tuple(x.shape[-2:]), mode="nearest")
        h, w = (x.shape[-2] // patch) * patch, (x.shape[-1] // patch) * patch  # whole patches only
        x, m = x[..., :h, :w], m[:, 0, :h, :w].long()
        to_scored = torch.full((256,), 255, dtype=torch.long)
        to_scored[torch.tensor(scored)] = torch.arange(len(scored))
        picked: dict[tuple[int, int], torch.Tensor] = {}  # per grid: the same patches for every view
        for name, (fn, grid_of) in self.views.items():
            grid = grid_of(h, w)
            labels = to_scored[patch_majority_labels(m, grid).cpu()]
            if grid not in picked:
                keep = (labels[0] != 255).nonzero().flatten()
                picked[grid] = keep[torch.randperm(len(keep), generator=self.generator)[:PATCHES_PER_IMAGE]]
            dense = fn(x).float().cpu()
            if "patch_accuracy" in self.analysis:
                ok, n = patch_accuracy(dense, classes.cpu(), labels)
                self.correct[name] += ok
                self.counted[name] += n
            if "coherence" in self.analysis:
                keep = picked[grid]
                self.pool[name].append((dense[0, keep], labels[0, keep]))

    def result(self) -> dict:
        out = {}
        for name in self.views:
            figures: dict = {}
            if "patch_accuracy" in self.analysis:
                figures["patch_accuracy"] = self.correct[name] / self.counted[name] if self.counted[name] else None
            if "coherence" in self.analysis and self.pool[name]:
                dense = torch.cat([d for d, _ in self.pool[name]])[None]
                labels = torch.cat([lab for _, lab in self.pool[name]])[None]
                cos, same = coherence_pairs(dense, labels, self.max_pairs, torch.Generator().manual_seed(0))
                try:
                    figures["coherence_auroc"] = coherence_auroc(cos, same)
                except ValueError:
                    figures["coherence_auroc"] = None
            out[name] = figures
        return out


def evaluate_benchmark(cfg, module, name: str, root: Path, out: Path, device, wandb_images: list) -> dict:
    e = cfg.eval
    clip = module.clip
    try:
        data = SegmentationSet(name, root, cfg.data.val.split, normalize_transform(module.input_mean, module.input_std), e.max_images)
    except FileNotFoundError as exc:
        raise MissingInputError(str(exc)) from None
    labels = label_set(cfg, name, data.class_names)
    proto = protocol(cfg, module.patch_size)
    text = clip.class_embeddings(labels.texts, templates(e.templates)).to(device)

    def logits_fn(x: torch.Tensor) -> torch.Tensor:
        return labels.class_logits(module.logits(x, text, tuple(x.shape[-2:])))

    views = {"model": (module.dense_embeddings, module.dense_grid)}
    if hasattr(module, "embedder"):  # PACL: show the frozen CLIP's own features beside the trained ones
        views["clip"] = (clip.dense_features, clip.grid)
    diagnostics = Diagnostics(views, list(e.analysis), e.coherence_pairs) if e.analysis else None
    first_names = clip.class_embeddings(tuple(labels.classes[c][0] for c in labels.scored),
                                        templates(e.templates)).to(device)
    metric = SegmentationScore(len(data.class_names)).to(device)
    skips = SkipCounter(cfg.data.max_bad_fraction, f"eval {name}")
    loader = DataLoader(data, batch_size=1, num_workers=cfg.data.num_workers, collate_fn=collate_segmentation)
    pictures = 0
    with torch.no_grad(), _autocast(cfg, device):
        for index, batch in enumerate(loader):
            try:
                skips.add(int("image" in batch), batch[EVENTS])
            except DataQualityError as exc:
                raise BadDataError(str(exc)) from None
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
                rgb = (image[0].float().cpu() * torch.tensor(module.input_std)[:, None, None]
                       + torch.tensor(module.input_mean)[:, None, None]).clamp(0, 1).mul(255).byte().permute(1, 2, 0).numpy()
                gt, pr = mask[0].cpu().numpy().astype(np.uint8), pred[0].cpu().numpy().astype(np.uint8)
                save_panel(out / "pictures" / name / f"{stem}.png", rgb, gt, pr, data.class_names, title=f"{name} {stem}")
                wandb_images.append((rgb, wandb_masks(gt, pr, data.class_names), f"{name}/{stem}"))
            if diagnostics is not None:
                diagnostics.update(image, mask, first_names, labels.scored, proto.short_side, module.patch_size)
    try:
        skips.check()
    except DataQualityError as exc:
        raise BadDataError(str(exc)) from None
    result = {**report(metric.compute(), data.class_names), "images": len(data) - skips.skipped,
              "skipped": skips.skipped, "settings": settings(cfg, module, data.split)}
    if diagnostics is not None:
        result["analysis"] = diagnostics.result()
    return result


def evaluate(experiment: str, overrides: list[str]) -> dict:
    cfg = load_config(experiment, overrides)
    if cfg.stages:
        raise ConfigError(f"'{experiment}' is a pipeline; evaluate one of its stages ({', '.join(cfg.stages)}) "
                          f"with ckpt=<that stage's checkpoint>")
    from lseg_pacl.training.data import check_benchmarks, ensure_synthetic

    ensure_synthetic(cfg)
    roots = check_benchmarks(cfg, list(cfg.eval.benchmarks) or None)
    module = load_objective(cfg.eval.ckpt) if cfg.eval.ckpt else build_objective(to_plain(cfg))
    if cfg.eval.ckpt and any(o.startswith("model.clip.last_block=") for o in overrides):
        module.clip.last_block = cfg.model.clip.last_block  # a training-free variant applied to trained weights
    device = _device(cfg)
    module = module.to(device).eval()
    out = _eval_dir(cfg.eval.ckpt, cfg)
    images: list = []
    results = {name: evaluate_benchmark(cfg, module, name, root, out, device, images) for name, root in roots.items()}
    merged = write_reports(out, results, title=f"{experiment}: zero-shot segmentation")
    to_wandb(cfg.logger.wandb, out, results, images, name=f"eval/{experiment}")
    for name, r in results.items():
        miou = "n/a" if r["mIoU"] is None else f"{100 * r['mIoU']:.2f}"
        print(f"{name:<14} mIoU {miou}  aAcc {100 * (r['aAcc'] or 0):.2f}  images {r['images']}")
    print(f"written: {out / 'results.json'} (and results.md, results.csv)")
    return merged

