"""Which frozen features a run may cache, decided from the config, and the stores it opens for them
(data_modules/feature_cache.py), handed to both the training data and the model.

Patch tokens are cacheable when the vision tower is frozen, the training data is map-style (coco format: each
sample has a stable index) and the transform gives the same tensor every epoch; text embeddings when the text
tower is frozen. Either side needs weights with an identity (a tag, or a file, keyed by its checksum): random
initial weights have none. Anything else turns that side off with a message saying which setting prevents it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from data_modules.captions import caption_vocabulary, read_coco_captions
from data_modules.feature_cache import FeatureStores, TextStore, TokenStore, digest, files_digest
from data_modules.transforms import caption_transform_is_deterministic
from lseg_pacl.models.clip import clip_geometry
from lseg_pacl.models.inputs import InputSpec
from lseg_pacl.models.weights import clip_weights_identity

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeatureCachePlan:
    root: Path  # <feature_cache_dir>/<digest of the weights' identity>/
    text_key: dict | None  # None: text embeddings are not cached
    image_key: dict | None  # None: patch tokens are not cached (without the data's part, added when opened)
    tokens: int  # patch tokens per sample
    width: int  # their width


def plan_feature_cache(cfg: DictConfig, inputs: InputSpec) -> FeatureCachePlan | None:
    """The cache this run uses, or None when ``data.train.feature_cache`` is off or nothing can be cached."""
    t = cfg.data.train
    if not t.feature_cache:
        return None
    if cfg.model.objective != "pacl":
        log.warning("feature cache off: model.objective=%s trains its encoders (only pacl freezes them)",
                    cfg.model.objective)
        return None
    p, clip = cfg.model.pacl, cfg.model.clip
    image_reasons = [] if p.freeze_vision else ["model.pacl.freeze_vision=false"]
    text_reasons = [] if p.freeze_text else ["model.pacl.freeze_text=false"]
    if t.format != "coco":
        image_reasons.append(f"data.train.format={t.format} (streamed samples have no stable index)")
        text_reasons.append(f"data.train.format={t.format} (an endless stream of distinct captions)")
    if not caption_transform_is_deterministic(t.crop_scale_min, t.hflip):
        image_reasons.append(
            f"data.train.crop_scale_min={t.crop_scale_min} / hflip={t.hflip} give a new crop or "
            f"flip each epoch (cacheable with crop_scale_min=1.0 hflip=false)"
        )
    weights = clip_weights_identity(clip.name, clip.pretrained)
    if weights is None:
        why = ("model.clip.pretrained=null (random weights have no identity to key a cache by: save them to "
               "a file and pass that)")
        image_reasons.append(why)
        text_reasons.append(why)
    for side, reasons in (("patch tokens", image_reasons), ("text embeddings", text_reasons)):
        if reasons:
            log.warning("feature cache: %s not cached: %s", side, "; ".join(reasons))
    if image_reasons and text_reasons:
        return None
    geometry = clip_geometry(clip.name)
    side = t.image_size // geometry.patch
    root = Path(t.feature_cache_dir or Path(cfg.run.root) / "feature_cache").expanduser() / digest(
        {"weights": weights}
    )
    precision = str(cfg.trainer.precision) if cfg.trainer.precision is not None else "32-true"
    image_key = None
    if not image_reasons:
        image_key = {
            "weights": weights,
            "model": clip.name,
            "last_block": clip.last_block,
            "grid": [side * side, geometry.width],
            "transform": {"resize": t.image_size, "mean": list(inputs.mean), "std": list(inputs.std)},
            "split": t.split,
            "precision": precision,
        }
    text_key = None if text_reasons else {"weights": weights, "model": clip.name, "precision": precision}
    return FeatureCachePlan(root, text_key, image_key, side * side, geometry.width)


def open_feature_cache(plan: FeatureCachePlan, train_root: Path, split: str) -> FeatureStores:
    """The stores of the plan for the coco-format training set at ``train_root`` (created or reopened)."""
    records = read_coco_captions(train_root, split)
    token_store = None
    if plan.image_key is not None:
        data = {
            "root": str(train_root.resolve()),
            "samples": len(records),
            "files": files_digest(r.file for r in records),
        }
        token_store = TokenStore(
            plan.root, {**plan.image_key, "data": data}, len(records), plan.tokens, plan.width
        )
        log.info(
            "feature cache: patch tokens in %s (%d of %d samples stored)",
            token_store.folder,
            token_store.filled(),
            len(records),
        )
    text_store = TextStore(plan.root, plan.text_key) if plan.text_key is not None else None
    captions, nouns = caption_vocabulary(records) if text_store is not None else ([], [])
    return FeatureStores(token_store, text_store, tuple(records), tuple(captions), tuple(nouns))
