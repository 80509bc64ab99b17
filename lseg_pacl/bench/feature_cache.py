"""Suite ``feature_cache``: what the frozen-feature cache (training/feature_caching.py) saves.

- ``demo``: the demo's PACL stage (tiny CLIP, synthetic captions, batch 128, hflip off so that features are
  cacheable) trained by Lightning for three epochs with the cache and three without, in one run: seconds per
  epoch after the first, their ratio (``feature_cache.speedup``), and the floor no cache can remove: the
  trainable embedder's forward + backward and the loss on the same batch
  (``feature_cache.demo_floor_s_per_step``).
- ``vitb16``: one PACL step at ViT-B/16 scale (random weights, 224 px, batch 16 on the CPU / 256 on a GPU):
  frozen vision and text encoders run live against the same step on stored float16 features.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import lightning as L
import torch

from lseg_pacl.bench.measure import seconds
from lseg_pacl.objectives.losses import contrastive_loss
from lseg_pacl.objectives.texts import caption_texts

DEMO_TRAIN_IMAGES = 1536  # 12 steps of 128 per epoch


class EpochTimer(L.Callback):
    """Seconds per training epoch, and before the first one (runs before the module's on_train_start, which
    fills the text store)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.before_first = 0.0

    def on_train_start(self, trainer, module) -> None:
        self._train_start = time.perf_counter()

    def on_train_epoch_start(self, trainer, module) -> None:
        self._start = time.perf_counter()
        if not self.seconds:
            self.before_first = self._start - self._train_start

    def on_train_epoch_end(self, trainer, module) -> None:
        self.seconds.append(time.perf_counter() - self._start)


def random_clip_file(folder: Path) -> Path:
    """The demo's tiny CLIP with random weights (seed 0) saved once: the frozen encoders both runs share (the
    feature cache keys weights by their file)."""
    from lseg_pacl.models.clip import create_clip

    path = folder / "random_tiny_clip.pt"
    if not path.is_file():
        torch.manual_seed(0)
        torch.save(create_clip("lseg-tiny-vit").state_dict(), path)
    return path


def demo_pacl_stage(folder: Path, train_images: int, *overrides: str):
    """(model, data) of the demo's PACL stage on a world of ``train_images`` in ``folder``, built as a run
    builds them."""
    from lseg_pacl.config.loading import load_config
    from lseg_pacl.training.runner import build_model_and_data

    return build_model_and_data(load_config("demo_pacl", [
        f"model.clip.pretrained={random_clip_file(folder)}", f"data.synthetic.out={folder / 'world'}",
        f"data.synthetic.n_train={train_images}", "data.synthetic.n_val=20", f"run.root={folder / 'runs'}",
        *overrides]))


def demo_epochs(folder: Path, cache: bool, train_images: int, epochs: int = 3) -> tuple[list[float], float]:
    """Seconds per training epoch of the demo's PACL stage, with or without the feature cache, and the seconds
    before the first epoch (filling the text store)."""
    from lseg_pacl.training.runner import make_trainer

    module, data = demo_pacl_stage(folder, train_images, "data.train.hflip=false",
                                   f"data.train.feature_cache={str(cache).lower()}",
                                   f"data.train.feature_cache_dir={folder / 'cache'}")
    timer = EpochTimer()
    trainer = make_trainer(
        module.cfg.data.max_bad_fraction,
        [timer],
        accelerator="cpu",
        devices=1,
        max_epochs=epochs,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, datamodule=data)
    return timer.seconds, timer.before_first


def demo_floor(folder: Path, train_images: int) -> float:
    """Seconds per step of what a cached step cannot avoid: the embedder and the loss, forward and
    backward."""
    module, data = demo_pacl_stage(folder, train_images)
    cfg = module.cfg
    module.train()
    batch = [data.train_set[i] for i in range(cfg.data.batch_size)]
    texts, positives = caption_texts(
        {"caption": [b["caption"] for b in batch], "nouns": [b["nouns"] for b in batch]},
        cfg.model.noun_prompt_templates,
    )
    with torch.no_grad():
        tokens = module.clip.patch_tokens(torch.stack([b["image"] for b in batch]))
        text_emb = module.clip.encode_text(texts)
    return seconds(lambda: trainable_step(module, tokens, text_emb, positives), repeats=5)


def trainable_step(module, tokens: torch.Tensor, text_emb: torch.Tensor, positives: torch.Tensor) -> None:
    """What a PACL step does once the frozen features exist: the embedder, the scores and the loss, forward
    and backward (the objective's own scoring, as in training)."""
    module.zero_grad(set_to_none=True)
    patches = module.embedder(tokens.float())  # under the caller's autocast, if any, as in training
    with torch.autocast(device_type=patches.device.type, enabled=False):  # compatibility and loss in fp32
        loss = contrastive_loss(module.scaled_scores(patches, text_emb, module.logit_scale()), positives)
    loss.backward()


def vitb16_pacl(device: str):
    """PACL on CLIP ViT-B/16 (random weights), in training mode."""
    from lseg_pacl.config.loading import load_config, to_plain
    from lseg_pacl.objectives import build_objective

    cfg = load_config("pacl_vitb16", ["model.clip.pretrained=null"])
    return build_objective(to_plain(cfg)).to(device).train()


def caption_batch(batch: int, device: str) -> tuple[list[str], torch.Tensor]:
    """The texts of a ``batch`` of COCO-like captions with PACL's noun prompts, and their positives."""
    nouns = [["dog", "frisbee", "grass"], ["man", "bicycle", "street"], ["cat", "sofa"],
             ["plate", "pizza", "table"]]
    captions = [f"a photo of a {n[0]} with a {n[1]} number {i}" for i, n in enumerate(nouns * (batch // 4))]
    texts, positives = caption_texts({"caption": captions, "nouns": nouns * (batch // 4)}, 7)
    return texts, positives.to(device)


def vitb16_step(device: str) -> dict[str, float]:
    """Seconds of one PACL step at ViT-B/16 scale: frozen encoders live, and the same step from stored
    features."""
    batch = 256 if device.startswith("cuda") else 16
    module = vitb16_pacl(device)
    g = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, 224, 224, generator=g).to(device)
    texts, positives = caption_batch(batch, device)

    def live() -> None:
        with torch.no_grad():
            tokens = module.clip.patch_tokens(images)
            text_emb = module.clip.encode_text(texts)
        trainable_step(module, tokens, text_emb, positives)

    with torch.no_grad():
        stored_tokens = module.clip.patch_tokens(images).half()
        stored_texts = module.clip.encode_text(texts).half()
    return {
        "live": seconds(live, repeats=2),
        "cached": seconds(lambda: trainable_step(module, stored_tokens, stored_texts, positives), repeats=3),
        "batch": batch,
        "texts": len(texts),
    }


def feature_cache_suite(
    full: bool, device: str = "cpu", train_images: int = DEMO_TRAIN_IMAGES, vitb16: bool = True
) -> dict[str, dict]:
    figures: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        live, _ = demo_epochs(folder, False, train_images)
        cached, fill = demo_epochs(folder, True, train_images)
        floor = demo_floor(folder, train_images)
    steps = train_images // 128
    later_live, later_cached = sum(live[1:]) / len(live[1:]), sum(cached[1:]) / len(cached[1:])
    figures["feature_cache.demo_epoch_s_without_cache"] = {
        "value": later_live,
        "unit": "s per epoch (epochs 2-3)",
    }
    figures["feature_cache.demo_text_fill_s"] = {
        "value": fill,
        "unit": "s (every caption and noun prompt, once)",
    }
    figures["feature_cache.demo_first_epoch_s_with_cache"] = {
        "value": cached[0],
        "unit": "s (fills the cache)",
    }
    figures["feature_cache.demo_epoch_s_with_cache"] = {
        "value": later_cached,
        "unit": "s per epoch (epochs 2-3)",
    }
    figures["feature_cache.speedup"] = {"value": later_live / later_cached, "unit": "x, later epochs"}
    figures["feature_cache.demo_floor_s_per_step"] = {
        "value": floor,
        "unit": "s (embedder + loss, fwd + bwd)",
    }
    figures["feature_cache.demo_cached_step_over_floor"] = {
        "value": later_cached / steps / floor,
        "unit": "ratio (1 = nothing left to remove)",
    }
    figures["feature_cache.demo_speedup_bound"] = {
        "value": later_live / steps / floor,
        "unit": "x, if a cached step cost only the floor",
    }
    if not vitb16:
        return figures
    step = vitb16_step(device)
    figures["feature_cache.vitb16_step_s_live"] = {
        "value": step["live"],
        "unit": f"s per step (batch {step['batch']}, {step['texts']} texts)",
    }
    figures["feature_cache.vitb16_step_s_cached"] = {"value": step["cached"], "unit": "s per step"}
    figures["feature_cache.vitb16_speedup"] = {"value": step["live"] / step["cached"], "unit": "x"}
    return figures
