"""Which frozen features a run may cache, and the stores it uses (data_modules/feature_cache.py).

Patch tokens are cacheable when the vision tower is frozen, the training data is map-style (coco format: each
sample has a stable index) and the transform gives the same tensor every epoch; text embeddings when the text
tower is frozen. Anything else turns that side off with a message saying which setting prevents it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig

from data_modules.feature_cache import TextStore, TokenStore, files_digest, weights_digest
from data_modules.transforms import caption_transform_is_deterministic

log = logging.getLogger(__name__)


@dataclass
class FeatureCachePlan:
    root: Path
    weights: str  # digest of the frozen CLIP's parameters
    image_key: dict | None  # None: patch tokens are not cached
    text_store: TextStore | None
    token_store: TokenStore | None = field(default=None)

    def tokens_for(self, dataset) -> TokenStore | None:
        """The token store of a coco-format training set (created or reopened), also kept here for the model."""
        if self.image_key is None:
            return None
        key = {**self.image_key, "data": {"root": str(dataset.root.resolve()), "samples": len(dataset.records),
                                         "files": files_digest(r.file for r in dataset.records)}}
        self.token_store = TokenStore(self.root / self.weights, key, len(dataset.records), *self.image_key["grid"])
        log.info("feature cache: patch tokens in %s (%d of %d samples stored)", self.token_store.folder,
                 self.token_store.filled(), len(dataset.records))
        return self.token_store


def plan_feature_cache(cfg: DictConfig, module) -> FeatureCachePlan | None:
    """The cache this run uses, or None when ``data.train.feature_cache`` is off or nothing can be cached."""
    t = cfg.data.train
    if not t.feature_cache:
        return None
    if cfg.model.objective != "pacl":
        log.warning("feature cache off: model.objective=%s trains its encoders (only pacl freezes them)",
                    cfg.model.objective)
        return None
    p = cfg.model.pacl
    image_reasons = [] if p.freeze_vision else ["model.pacl.freeze_vision=false"]
    text_reasons = [] if p.freeze_text else ["model.pacl.freeze_text=false"]
    if t.format != "coco":
        image_reasons.append(f"data.train.format={t.format} (streamed samples have no stable index)")
        text_reasons.append(f"data.train.format={t.format} (an endless stream of distinct captions)")
    if not caption_transform_is_deterministic(t.crop_scale_min, t.hflip):
        image_reasons.append(f"data.train.crop_scale_min={t.crop_scale_min} / hflip={t.hflip} give a new crop or "
                             f"flip each epoch (cacheable with crop_scale_min=1.0 hflip=false)")
    for side, reasons in (("patch tokens", image_reasons), ("text embeddings", text_reasons)):
        if reasons:
            log.warning("feature cache: %s not cached: %s", side, "; ".join(reasons))
    if image_reasons and text_reasons:
        return None
    clip = module.clip
    weights = weights_digest(clip.model)
    root = Path(t.feature_cache_dir or Path(cfg.run.root) / "feature_cache").expanduser()
    precision = str(cfg.trainer.precision) if cfg.trainer.precision is not None else "32-true"
    text_store = None if text_reasons else TextStore(root / weights, {"model": clip.name, "precision": precision})
    image_key = None
    if not image_reasons:
        grid = clip.grid(t.image_size, t.image_size)
        image_key = {"model": clip.name, "last_block": clip.last_block, "grid": [grid[0] * grid[1], clip.width],
                     "transform": {"resize": t.image_size, "mean": list(module.input_mean),
                                   "std": list(module.input_std)}, "split": t.split, "precision": precision}
    return FeatureCachePlan(root, weights, image_key, text_store)
