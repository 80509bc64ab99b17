"""LSeg training: pixel-wise cross-entropy (ignore 255) of the label logits on a segmentation dataset's masks,
with a frozen CLIP text encoder (docs/methods.md#lseg). The decoder and head learn at ``head_lr_mult`` times
the backbone's rate (SGD, poly decay per step in the experiments). Zero-shot on other label sets works through
the shared evaluation: any list of names is embedded and scored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn

from data_modules.bad_samples import batch_size_of
from data_modules.benchmarks import IGNORE_INDEX
from lseg_pacl.models.dpt import backbone_spec
from lseg_pacl.models.inputs import InputSpec
from lseg_pacl.models.lseg import LSegNet
from lseg_pacl.models.lseg_official import load_initial_weights
from lseg_pacl.models.prompts import templates
from lseg_pacl.objectives.base import OTHERS, Benchmarks, EpisodeBenchmarks, ZeroShotObjective

# the official net.pretrained: the ViT with its readout/reassemble layers, or the ResNet (lang-seg
# lsegmentation_module.py:119-127, lsegmentation_module_zs.py:237-244)
BASE_RATE = ("net.dpt.vit.", "net.dpt.readout.", "net.dpt.reassemble.", "net.dpt.resnet.")


class LSeg(ZeroShotObjective):
    """``train_classes``: the class names of the training set's masks, in mask-id order (none for
    evaluation)."""

    uses_clip_image_tower = False  # images go through the DPT; CLIP embeds the labels

    def __init__(
        self,
        config: dict,
        load_pretrained: bool = True,
        benchmarks: Benchmarks = (),
        train_classes: Sequence[str] = (),
        episodes: EpisodeBenchmarks = (),
    ) -> None:
        super().__init__(config, load_pretrained, benchmarks, episodes)
        self.clip.requires_grad_(False)  # the text encoder is frozen
        self.clip.eval()
        c = self.cfg.model.lseg
        self.net = LSegNet(
            c.backbone,
            c.backbone_pretrained if load_pretrained and not c.init_from else None,
            self.clip.embed_dim,
            c.features,
            c.spatial_reg,
            c.block_depth,
            c.activation,
            c.logit_scale,
            c.learn_logit_scale,
        )
        if load_pretrained and c.init_from:  # an official lang-seg checkpoint or one of ours
            load_initial_weights(self.net, self.clip.model, c.init_from, bool(self.cfg.model.clip.quick_gelu))
        self.train_templates = templates(c.templates)
        self.train_class_names = tuple(train_classes)

    @classmethod
    def input_spec(cls, cfg: DictConfig) -> InputSpec:
        c = cfg.model.lseg
        return InputSpec(backbone_spec(c.backbone)["patch"], tuple(c.input_mean), tuple(c.input_std))

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False):
        """Checkpoints written while LSeg still kept CLIP's image tower carry its weights: they are not
        ours."""
        own = {k: v for k, v in state_dict.items() if not k.startswith("clip.model.visual.")}
        return super().load_state_dict(own, strict=strict, assign=assign)

    def train(self, mode: bool = True):
        super().train(mode)
        self.clip.eval()  # frozen: no dropout or batch-statistics changes in the text encoder
        return self

    # ---- what the shared evaluation uses
    @property
    def input_mean(self) -> tuple[float, ...]:
        return tuple(self.cfg.model.lseg.input_mean)

    @property
    def input_std(self) -> tuple[float, ...]:
        return tuple(self.cfg.model.lseg.input_std)

    @property
    def patch_size(self) -> int:
        return self.net.patch_size

    def dense_grid(self, height: int, width: int) -> tuple[int, int]:
        return height // 2, width // 2

    def dense_embeddings(self, images: torch.Tensor) -> torch.Tensor:
        """The per-pixel embeddings [B, (H/2)(W/2), D] (unit vectors), row-major."""
        return self.net.pixel_embeddings(images).flatten(2).transpose(1, 2)

    def logits(
        self, images: torch.Tensor, class_embeddings: torch.Tensor, size: tuple[int, int]
    ) -> torch.Tensor:
        return self.net(images, class_embeddings, size)

    def episode_logits(self, images: torch.Tensor, class_ids: torch.Tensor, texts: torch.Tensor,
                       size: tuple[int, int]) -> torch.Tensor:
        """One forward for the whole batch, each image against its own ["others", class] pair (lang-seg
        lseg_net_zs.py:294-301, 326-333)."""
        texts = texts.to(images.device)
        pairs = torch.stack([texts[0].expand(len(class_ids), -1), texts[1 + class_ids.to(images.device)]], 1)
        return self.net(images, pairs, size)

    # ---- training
    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor | None:
        if (
            batch_size_of(batch) == 0
        ):  # every sample was bad (counted by SkipMonitor); still joins guard_loss's
            return self.guard_loss(self.empty_batch_loss())  # all-reduce, as every other rank does
        if "class_id" in batch:
            return self.guard_loss(self.episode_loss(batch))
        images, masks = batch["image"], batch["mask"]
        labels = self.clip.class_embeddings(self.train_class_names, self.train_templates).to(images.device)
        logits = self.logits(images, labels, tuple(masks.shape[-2:]))
        loss = F.cross_entropy(logits.float(), masks, ignore_index=IGNORE_INDEX)
        self.log("train/loss", loss, prog_bar=True, batch_size=images.shape[0])
        self.log("train/logit_scale", self.net.log_scale.exp(), batch_size=images.shape[0])
        return self.guard_loss(loss)

    def episode_loss(self, batch: dict) -> torch.Tensor:
        """Zero-shot training on episodes of the seen classes, as lang-seg's LSegmentationModuleZS (not in
        fine-tune mode, lsegmentation_module_zs.py:122-127, 338-343): the supports then the queries in one
        batch, binary masks, 2-way logits, cross-entropy averaged over every pixel."""
        images = torch.cat([batch["support_image"], batch["image"]])
        targets = torch.cat([batch["support_target"], batch["target"]])
        class_ids = torch.cat([batch["class_id"], batch["class_id"]])
        texts = self.clip.class_embeddings((OTHERS, *self.train_class_names), self.train_templates)
        logits = self.episode_logits(images, class_ids, texts, tuple(targets.shape[-2:]))
        loss = F.cross_entropy(logits.float(), targets, ignore_index=IGNORE_INDEX)
        self.log("train/loss", loss, prog_bar=True, batch_size=images.shape[0])
        return loss

    def lr_groups(self) -> list[tuple[list[tuple[str, nn.Parameter]], float]]:
        """As the official code groups them (lang-seg lsegmentation_module.py:119-127): the ViT and its
        readout/reassemble layers, or the ResNet (``net.pretrained`` there) at the base rate; the decoder's
        scratch (per-level 3x3 convs, fusion blocks, head, spatial block) and a learned scale at head_lr_mult
        times it."""
        named = self.trainable_parameters()
        backbone = [(n, p) for n, p in named if n.startswith(BASE_RATE)]
        rest = [(n, p) for n, p in named if not n.startswith(BASE_RATE)]
        return [(backbone, 1.0), (rest, self.cfg.model.lseg.head_lr_mult)]
