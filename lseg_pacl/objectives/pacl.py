"""PACL training: frozen CLIP encoders, a trainable patch embedder, and the patch-aligned compatibility inside
a symmetric InfoNCE on caption data (docs/methods.md#pacl).

Texts per batch: the captions plus, with noun prompts on, the batch's nouns in PACL's templates (texts.py).
With the run's frozen-feature stores (training/feature_caching.py) the frozen features of a sample are
computed once and read back afterwards.
"""

from __future__ import annotations

import contextlib
import logging

import torch
from torch import nn

from data_modules.feature_cache import FeatureStores, TextStore
from data_modules.ranks import rank
from lseg_pacl.models.pacl import PatchEmbedder, pacl_compatibility
from lseg_pacl.models.prompts import PACL_TEMPLATES
from lseg_pacl.objectives.base import Benchmarks
from lseg_pacl.objectives.contrastive import ContrastiveObjective
from lseg_pacl.objectives.distributed import encode_chunk

log = logging.getLogger(__name__)


class Pacl(ContrastiveObjective):
    def __init__(
        self,
        config: dict,
        load_pretrained: bool = True,
        benchmarks: Benchmarks = (),
        feature_cache: FeatureStores | None = None,
    ) -> None:
        super().__init__(config, load_pretrained, benchmarks)
        p = self.cfg.model.pacl
        self.feature_cache = feature_cache
        self.clip.requires_grad_(False)
        if not p.freeze_vision:
            self.clip.model.visual.requires_grad_(True)
        if not p.freeze_text:
            for name, param in self.clip.model.named_parameters():
                if not name.startswith("visual.") and name != "logit_scale":
                    param.requires_grad_(True)
        skip_init = self.clip.model.visual.proj if p.init_skip_from_proj else None
        self.embedder = PatchEmbedder(self.clip.width, self.clip.embed_dim, p.hidden_dim, skip_init)
        self.log_temperature = nn.Parameter(
            torch.tensor(float(p.temperature)).log(), requires_grad=p.learn_temperature
        )
        self.log_logit_scale = nn.Parameter(
            torch.tensor(float(self.cfg.model.logit_scale_init)).log(),
            requires_grad=self.cfg.model.learn_logit_scale,
        )

    def train(self, mode: bool = True) -> Pacl:
        """Frozen encoders stay in eval mode (no dropout or norm-statistics updates) while training."""
        super().train(mode)
        p = self.cfg.model.pacl
        if p.freeze_vision:
            self.clip.model.visual.eval()
        if p.freeze_text:
            for name, child in self.clip.model.named_children():
                if name != "visual":
                    child.eval()
        return self

    def temperature(self) -> torch.Tensor:
        return self.log_temperature.float().exp()

    def logit_scale(self) -> torch.Tensor:
        return self.log_logit_scale.float().exp().clamp(max=self.cfg.model.logit_scale_max)

    def _frozen(self, frozen: bool):
        return torch.no_grad() if frozen else contextlib.nullcontext()

    def patch_embeddings(self, images: torch.Tensor) -> torch.Tensor:
        with self._frozen(self.cfg.model.pacl.freeze_vision):
            tokens = self.clip.patch_tokens(images)
        return self.embedder(tokens)

    def dense_embeddings(self, images: torch.Tensor) -> torch.Tensor:
        return self.patch_embeddings(images)

    # ---- the frozen features of a training batch, from the feature cache where it has them
    def frozen_tokens(self, batch: dict) -> torch.Tensor:
        """The CLIP patch tokens of a batch [B, T, width]: computed for its images (and stored, with a token
        store) and read for its cached rows. With a cache, live tokens are rounded to float16 like stored
        ones, so a sample gives the same loss whichever way its features arrive."""
        store = self.feature_cache.token_store if self.feature_cache is not None else None
        parts = []
        if "image" in batch:
            with self._frozen(self.cfg.model.pacl.freeze_vision):
                live = self.clip.patch_tokens(batch["image"])
            if store is not None:
                live = live.to(torch.float16)
                store.write(batch["index"][: live.shape[0]].tolist(), live)
            parts.append(live)
        if "tokens" in batch:
            parts.append(batch["tokens"])
        dtype = torch.float16 if store is not None else parts[0].dtype
        return torch.cat([p.to(dtype) for p in parts]).to(self.embedder.skip.weight.dtype)

    def text_embeddings(self, texts: list[str]) -> torch.Tensor:
        """Embeddings of the batch's texts: from the text store (encoding, then storing, any it lacks), or
        encoded now, each DDP rank taking a share."""
        store = self.feature_cache.text_store if self.feature_cache is not None else None
        if store is None:
            with self._frozen(self.cfg.model.pacl.freeze_text):
                return encode_chunk(texts, self.clip.encode_text)
        missing = store.missing(texts)  # the same on every rank: the texts are the global batch's
        if missing:
            self._encode_into(store, missing)
        return store.get(texts).to(self.device).float()

    @torch.no_grad()
    def _encode_into(self, store: TextStore, texts: list[str], chunk: int = 1024) -> None:
        for start in range(0, len(texts), chunk):
            part = texts[start : start + chunk]
            store.add(part, self.clip.encode_text(part).float())

    def on_train_start(self) -> None:
        self.fill_text_store()

    def fill_text_store(self) -> None:
        """Store every caption and noun prompt the training set can produce (once; a later run with the same
        text encoder finds them stored), so that no training step runs the text tower."""
        cache = self.feature_cache
        if cache is None or cache.text_store is None:
            return
        store = cache.text_store
        captions, nouns = list(cache.captions), list(cache.nouns)
        prompts = (
            [t.format(n) for n in nouns for t in PACL_TEMPLATES]
            if self.cfg.model.noun_prompt_templates
            else []
        )
        missing = store.missing(captions + prompts)
        if missing:
            log.info("feature cache: encoding %d texts (%d already stored)", len(missing), len(store))
            self._encode_into(store, missing)  # the frozen text tower is in eval mode (train() above)
        if rank() == 0:
            store.save()

    def on_train_epoch_end(self) -> None:
        cache = self.feature_cache
        if cache is not None and cache.token_store is not None:
            cache.token_store.flush()
        if cache is not None and cache.text_store is not None and rank() == 0:
            cache.text_store.save()

    # ---- the contrastive step's hooks (contrastive.py)
    def image_features(self, batch: dict, text_emb: torch.Tensor) -> torch.Tensor:
        if "image" not in batch and "tokens" not in batch:  # a rank whose samples were all bad, under DDP
            return text_emb.new_zeros(0, 1, text_emb.shape[1])
        return self.embedder(self.frozen_tokens(batch))

    def scaled_scores(
        self, features: torch.Tensor, text_emb: torch.Tensor, scale: torch.Tensor
    ) -> torch.Tensor:
        return scale * pacl_compatibility(features.float(), text_emb.float(), self.temperature())

    def log_extras(self, batch_size: int, texts: list[str]) -> None:
        self.log("train/temperature", self.temperature(), batch_size=batch_size)
        self.log("train/texts", float(len(texts)), batch_size=batch_size)
