"""Plain CLIP training: symmetric InfoNCE between pooled image and caption embeddings, learnable logit scale
(optionally with PACL's noun prompts as extra texts, model.noun_prompt_templates).

The baseline PACL starts from; its zero-shot segmentation uses CLIP's own patch tokens (ln_post + projection).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from data_modules.bad_samples import batch_size_of
from lseg_pacl.objectives.base import ZeroShotObjective
from lseg_pacl.objectives.distributed import encode_chunk, gather_with_grad, global_batch, world
from lseg_pacl.objectives.losses import contrastive_loss
from lseg_pacl.objectives.texts import caption_texts


class ClipContrastive(ZeroShotObjective):
    def __init__(self, config: dict, load_pretrained: bool = True) -> None:
        super().__init__(config, load_pretrained)
        self.clip.model.logit_scale.requires_grad_(self.cfg.model.learn_logit_scale)

    def logit_scale(self) -> torch.Tensor:
        return self.clip.model.logit_scale.float().exp().clamp(max=self.cfg.model.logit_scale_max)

    def dense_embeddings(self, images: torch.Tensor) -> torch.Tensor:
        return self.clip.dense_features(images)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor | None:
        empty = batch_size_of(batch) == 0  # every sample was bad (counted by SkipMonitor)
        if empty and world()[1] == 1:
            return self.empty_batch_loss()
        if empty:  # under DDP this rank still joins every gather, with no images of its own
            batch = {"caption": [], "nouns": []}
        texts, positives = caption_texts(global_batch(batch), self.cfg.model.noun_prompt_templates,
                                         self.text_generator())
        text_emb = encode_chunk(texts, self.clip.encode_text)  # all ranks' texts (this rank encodes a share)
        image_emb = text_emb.new_zeros(0, text_emb.shape[1]) if empty else self.clip.encode_image(batch["image"])
        with torch.autocast(device_type=image_emb.device.type, enabled=False):  # logits and loss in fp32
            image = F.normalize(image_emb.float(), dim=-1)
            text = F.normalize(text_emb.float(), dim=-1)
            scale = self.logit_scale()
            logits = gather_with_grad(scale * image @ text.t())  # every rank's images against all texts
            loss = contrastive_loss(logits, positives.to(image.device))
        if empty:
            loss = loss + self.empty_batch_loss()  # a (zero) gradient for every parameter, as DDP expects
        bs = image.shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        self.log("train/logit_scale", scale, batch_size=bs)
        return self.guard_loss(loss)
