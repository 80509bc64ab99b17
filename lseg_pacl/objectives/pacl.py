"""PACL training: frozen CLIP encoders, a trainable patch embedder, and the patch-aligned compatibility inside
a symmetric InfoNCE on caption data (method notes, section 2).

Texts per batch: the captions plus, with noun prompts on, the batch's nouns in PACL's templates (texts.py).
"""

from __future__ import annotations

import contextlib
import logging

import torch
from torch import nn

from data_modules.bad_samples import batch_size_of
from data_modules.feature_cache import TextStore, TokenStore
from lseg_pacl.models.pacl import PatchEmbedder, pacl_compatibility
from lseg_pacl.objectives.base import ZeroShotObjective
from lseg_pacl.objectives.distributed import encode_chunk, gather_with_grad, global_batch, world
from lseg_pacl.objectives.losses import contrastive_loss
from lseg_pacl.objectives.texts import caption_texts
from lseg_pacl.models.prompts import PACL_TEMPLATES

log = logging.getLogger(__name__)


class Pacl(ZeroShotObjective):
    def __init__(self, config: dict, load_pretrained: bool = True) -> None:
        super().__init__(config, load_pretrained)
        p = self.cfg.model.pacl
        self.clip.requires_grad_(False)
        if not p.freeze_vision:
            self.clip.model.visual.requires_grad_(True)
        if not p.freeze_text:
            for name, param in self.clip.model.named_parameters():
                if not name.startswith("visual.") and name != "logit_scale":
                    param.requires_grad_(True)
        skip_init = self.clip.model.visual.proj if p.init_skip_from_proj else None
        self.embedder = PatchEmbedder(self.clip.width, self.clip.embed_dim, p.hidden_dim, skip_init)
        self.log_temperature = nn.Parameter(torch.tensor(float(p.temperature)).log(),
                                            requires_grad=p.learn_temperature)
        self.log_logit_scale = nn.Parameter(torch.tensor(float(self.cfg.model.logit_scale_init)).log(),
                                            requires_grad=self.cfg.model.learn_logit_scale)

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
    def _stores(self) -> tuple[TokenStore | None, TextStore | None]:
        plan = self.feature_cache
        return (plan.token_store, plan.text_store) if plan is not None else (None, None)

    def frozen_tokens(self, batch: dict) -> torch.Tensor:
        """The CLIP patch tokens of a batch [B, T, width]: computed for its images (and stored, with a token
        store) and read for its cached rows. With a cache, live tokens are rounded to float16 like stored ones,
        so a sample gives the same loss whichever way its features arrive."""
        store = self._stores()[0]
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
        """Embeddings of the batch's texts: from the text store (encoding, then storing, any it lacks), or encoded
        now, each DDP rank taking a share."""
        store = self._stores()[1]
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
            part = texts[start:start + chunk]
            store.add(part, self.clip.encode_text(part).float())

    def on_train_start(self) -> None:
        self.fill_text_store(getattr(getattr(self.trainer, "datamodule", None), "train_set", None))

    def fill_text_store(self, data) -> None:
        """Store every caption and noun prompt the training set can produce (once; a later run with the same text
        encoder finds them stored), so that no training step runs the text tower."""
        store = self._stores()[1]
        if store is None or not hasattr(data, "all_texts"):
            return
        captions, nouns = data.all_texts()
        prompts = [t.format(n) for n in nouns for t in PACL_TEMPLATES] if self.cfg.model.noun_prompt_templates else []
        missing = store.missing(captions + prompts)
        if missing:
            log.info("feature cache: encoding %d texts (%d already stored)", len(missing), len(store))
            self._encode_into(store, missing)  # the frozen text tower is in eval mode (train() above)
        if world()[0] == 0:
            store.save()

    def on_train_epoch_end(self) -> None:
        token_store, text_store = self._stores()
        if token_store is not None:
            token_store.flush()
        if text_store is not None and world()[0] == 0:
            text_store.save()

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor | None:
        empty = batch_size_of(batch) == 0  # every sample was bad (counted by SkipMonitor)
        if empty and world()[1] == 1:
            return self.empty_batch_loss()
        if empty:  # under DDP this rank still joins every gather, with no images of its own
            batch = {"caption": [], "nouns": []}
        texts, positives = caption_texts(global_batch(batch), self.cfg.model.noun_prompt_templates,
                                         self.text_generator())
        text_emb = self.text_embeddings(texts)  # all ranks' texts
        patches = text_emb.new_zeros(0, 1, text_emb.shape[1]) if empty else self.embedder(self.frozen_tokens(batch))
        with torch.autocast(device_type=patches.device.type, enabled=False):  # compatibility and loss in fp32
            phi = pacl_compatibility(patches.float(), text_emb.float(), self.temperature())  # local images
            scale = self.logit_scale()
            logits = gather_with_grad(scale * phi)  # every rank's images against all texts
            loss = contrastive_loss(logits, positives.to(phi.device))
        if empty:
            loss = loss + self.empty_batch_loss()  # a (zero) gradient for every parameter, as DDP expects
        bs = patches.shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        self.log("train/logit_scale", scale, batch_size=bs)
        self.log("train/temperature", self.temperature(), batch_size=bs)
        self.log("train/texts", float(len(texts)), batch_size=bs)
        return self.guard_loss(loss)
