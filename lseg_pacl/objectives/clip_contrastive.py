"""Plain CLIP training: symmetric InfoNCE between pooled image and caption embeddings, learnable logit scale
(optionally with PACL's noun prompts as extra texts, model.noun_prompt_templates).

The baseline PACL starts from; its zero-shot segmentation uses CLIP's own patch tokens (ln_post + projection).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from lseg_pacl.methods import build_method
from lseg_pacl.objectives.base import Benchmarks
from lseg_pacl.objectives.contrastive import ContrastiveObjective
from lseg_pacl.objectives.distributed import encode_chunk


class ClipContrastive(ContrastiveObjective):
    def __init__(self, config: dict, load_pretrained: bool = True, benchmarks: Benchmarks = ()) -> None:
        super().__init__(config, load_pretrained, benchmarks)
        self.clip.model.logit_scale.requires_grad_(self.cfg.model.learn_logit_scale)

    def logit_scale(self) -> torch.Tensor:
        return self.clip.model.logit_scale.float().exp().clamp(max=self.cfg.model.logit_scale_max)

    def dense_embeddings(self, images: torch.Tensor) -> torch.Tensor:
        return self.clip.dense_features(images)

    def logits(
        self, images: torch.Tensor, class_embeddings: torch.Tensor, size: tuple[int, int]
    ) -> torch.Tensor:
        """The CLIP's training-free method (model.clip.last_block; plain: its own last block) on the images,
        with eval.method_options: per-text cosines at ``size``."""
        method = build_method(self.clip.last_block, OmegaConf.to_container(self.cfg.eval.method_options))
        trunk = self.clip.trunk(images, method.needs())
        return method.logits(self.clip, trunk, images, class_embeddings, size)

    def text_embeddings(self, texts: list[str]) -> torch.Tensor:
        return encode_chunk(texts, self.clip.encode_text)  # this rank encodes a share

    def image_features(self, batch: dict, text_emb: torch.Tensor) -> torch.Tensor:
        if "image" not in batch:
            return text_emb.new_zeros(0, text_emb.shape[1])
        return self.clip.encode_image(batch["image"])

    def scaled_scores(
        self, features: torch.Tensor, text_emb: torch.Tensor, scale: torch.Tensor
    ) -> torch.Tensor:
        image = F.normalize(features.float(), dim=-1)
        text = F.normalize(text_emb.float(), dim=-1)
        return scale * image @ text.t()
