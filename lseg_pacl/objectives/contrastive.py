"""The contrastive training step CLIP and PACL share: the batch's captions (and noun prompts) as texts, every
image scored against every text of every rank, symmetric multi-positive InfoNCE with a learned logit scale.

An objective says how it embeds the texts (``text_embeddings``), what it computes for its images
(``image_features``) and how it scores them against the texts (``scaled_scores``); the rest is here.
"""

from __future__ import annotations

import abc

import torch

from data_modules.bad_samples import batch_size_of
from data_modules.ranks import distributed
from lseg_pacl.objectives.base import ZeroShotObjective
from lseg_pacl.objectives.distributed import gather_with_grad, global_batch
from lseg_pacl.objectives.losses import contrastive_loss
from lseg_pacl.objectives.texts import caption_texts


class ContrastiveObjective(ZeroShotObjective, abc.ABC):
    @abc.abstractmethod
    def logit_scale(self) -> torch.Tensor:
        """The learned scale of the scores (clamped at model.logit_scale_max)."""

    @abc.abstractmethod
    def text_embeddings(self, texts: list[str]) -> torch.Tensor:
        """[len(texts), D] embeddings of all ranks' texts."""

    @abc.abstractmethod
    def image_features(self, batch: dict, text_emb: torch.Tensor) -> torch.Tensor:
        """This rank's image side of the batch (a batch without images: an empty tensor)."""

    @abc.abstractmethod
    def scaled_scores(self, features: torch.Tensor, text_emb: torch.Tensor,
                      scale: torch.Tensor) -> torch.Tensor:
        """[b, T] logits of this rank's images against all texts (run in float32)."""

    def log_extras(self, batch_size: int, texts: list[str]) -> None:
        """Objective-specific training figures."""

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor | None:
        empty = batch_size_of(batch) == 0  # every sample was bad (counted by SkipMonitor)
        if empty and not distributed():
            return self.empty_batch_loss()
        if empty:  # under DDP this rank still joins every gather, with no images of its own
            batch = {"caption": [], "nouns": []}
        texts, positives = caption_texts(
            global_batch(batch), self.cfg.model.noun_prompt_templates, self.text_generator()
        )
        text_emb = self.text_embeddings(texts)  # all ranks' texts
        features = self.image_features(batch, text_emb)
        with torch.autocast(device_type=features.device.type, enabled=False):  # scores and loss in fp32
            scale = self.logit_scale()
            logits = gather_with_grad(self.scaled_scores(features, text_emb, scale))  # every rank's images
            loss = contrastive_loss(logits, positives.to(features.device))
        if empty:
            loss = loss + self.empty_batch_loss()  # a (zero) gradient for every parameter, as DDP expects
        bs = features.shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        self.log("train/logit_scale", scale, batch_size=bs)
        self.log_extras(bs, texts)
        return self.guard_loss(loss)
