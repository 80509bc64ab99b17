"""What every objective shares: the config it was built from, the input it expects, the optimizer, the
non-finite-loss guard, and zero-shot segmentation validation on the benchmarks it is given (val/mIoU/<name>
each, val/mIoU their mean).

An objective is built from the run's plan: the config (saved as its only hyperparameter, so a checkpoint alone
rebuilds it), the validation benchmarks with their class lists, and whatever else its subclass takes. It never
asks the Trainer or the DataModule for them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import lightning as L
import torch
from omegaconf import DictConfig
from torch import nn

from data_modules.bad_samples import batch_size_of
from data_modules.benchmarks import benchmark
from data_modules.ranks import distributed, rank
from lseg_pacl.config.loading import from_plain
from lseg_pacl.errors import TrainingDivergedError
from lseg_pacl.evaluation.episodes import EpisodeMeter
from lseg_pacl.evaluation.metrics import SegmentationScore
from lseg_pacl.models.clip import ClipBackbone, clip_geometry, clip_normalisation, clip_quick_gelu
from lseg_pacl.models.inputs import InputSpec
from lseg_pacl.models.prompts import templates
from lseg_pacl.models.zeroshot import zero_shot_logits
from lseg_pacl.objectives.nonfinite import NonFiniteGuard
from lseg_pacl.objectives.optim import configure_optimization

log = logging.getLogger(__name__)

Benchmarks = Sequence[
    tuple[str, Sequence[str]]
]  # (benchmark name, its class names) per validation DataLoader
# (episode benchmark, every class name, the fold's class ids) per episode DataLoader, after the dense ones
EpisodeBenchmarks = Sequence[tuple[str, Sequence[str], Sequence[int]]]
OTHERS = "others"  # the first of each episode's two texts (lang-seg lseg_net_zs.py:171-174)


class ZeroShotObjective(L.LightningModule):
    """Base LightningModule. ``config`` is the full experiment config as plain containers.
    ``load_pretrained=False`` skips reading the configured weights (a checkpoint's state dict replaces them
    anyway). ``benchmarks``: the validation DataLoaders' (name, class names), in DataLoader order;
    ``episodes``: the episode benchmarks validated after them (LSeg's zero-shot protocol)."""

    uses_clip_image_tower = True

    def __init__(self, config: dict, load_pretrained: bool = True, benchmarks: Benchmarks = (),
                 episodes: EpisodeBenchmarks = ()) -> None:
        super().__init__()
        clip = config["model"]["clip"]
        quick_gelu = clip_quick_gelu(clip["name"], clip.get("pretrained"), clip.get("quick_gelu"))
        # the activation it is built with, in its checkpoints: a reload builds the same, whatever the weights
        config = {**config, "model": {**config["model"], "clip": {**clip, "quick_gelu": quick_gelu}}}
        self.save_hyperparameters({"config": config})
        self.cfg = from_plain(config)
        clip_cfg = self.cfg.model.clip
        self.clip = ClipBackbone(
            clip_cfg.name,
            clip_cfg.pretrained,
            clip_cfg.image_size,
            clip_cfg.last_block,
            image_tower=self.uses_clip_image_tower,
            pos_embed=clip_cfg.pos_embed,
            quick_gelu=quick_gelu,
            load_weights=load_pretrained,
        )
        self.templates = templates(self.cfg.eval.templates)
        self.val_benchmarks = [(name, tuple(names)) for name, names in benchmarks]
        self.val_miou = nn.ModuleList(SegmentationScore(len(names), ignore_index=benchmark(name).ignore_index)
                                      for name, names in self.val_benchmarks)
        self.val_episodes = [(name, tuple(names), tuple(fold)) for name, names, fold in episodes]
        self.episode_meters = nn.ModuleList(
            EpisodeMeter(fold, len(names)) for _, names, fold in self.val_episodes
        )
        self.nonfinite = NonFiniteGuard(self.cfg.optim.max_nonfinite_steps)

    # ---- what an objective provides
    @classmethod
    def input_spec(cls, cfg: DictConfig) -> InputSpec:
        """The images its encoder takes, from the config alone (CLIP's patch and normalisation by default);
        the data is built from this before the model exists, and the built model agrees (tests)."""
        c = cfg.model.clip
        mean, std = clip_normalisation(c.name, c.pretrained)
        return InputSpec(clip_geometry(c.name).patch, mean, std)

    @property
    def input_mean(self) -> tuple[float, ...]:
        """The normalisation its image encoder expects (CLIP's by default)."""
        return tuple(self.clip.mean)

    @property
    def input_std(self) -> tuple[float, ...]:
        return tuple(self.clip.std)

    @property
    def patch_size(self) -> int:
        """Input sides must divide by this."""
        return self.clip.patch_size

    def dense_embeddings(self, images: torch.Tensor) -> torch.Tensor:
        """[B, T, D] patch embeddings in the space where class-name texts live (each objective defines it)."""
        raise TypeError(f"{type(self).__name__} does not define dense_embeddings")

    def text_is_trainable(self) -> bool:
        return any(p.requires_grad for p in self.clip.model.transformer.parameters())

    # ---- validation: zero-shot segmentation
    def on_validation_epoch_start(self) -> None:
        if self.text_is_trainable():
            self.clip.text_cache.clear()

    def logits(
        self, images: torch.Tensor, class_embeddings: torch.Tensor, size: tuple[int, int]
    ) -> torch.Tensor:
        """Class logits [B, C, *size] against unit class embeddings [C, D]; by default the per-patch cosine,
        bilinearly upsampled (objectives with their own head override this)."""
        grid = self.dense_grid(images.shape[-2], images.shape[-1])
        return zero_shot_logits(self.dense_embeddings(images), grid, class_embeddings, size)

    def dense_grid(self, height: int, width: int) -> tuple[int, int]:
        """The grid ``dense_embeddings`` lays its T embeddings on, for an input of this size."""
        return self.clip.grid(height, width)

    def segment(
        self, images: torch.Tensor, class_names: tuple[str, ...], size: tuple[int, int] | None = None
    ) -> torch.Tensor:
        """Class logits [B, C, H, W] for a label set."""
        classes = self.clip.class_embeddings(class_names, self.templates).to(images.device)
        return self.logits(images, classes, size or tuple(images.shape[-2:]))

    def episode_texts(self, class_names: Sequence[str]) -> torch.Tensor:
        """Unit embeddings [1 + C, D] of "others" and each class name: an episode of class c is scored
        against rows 0 and 1 + c."""
        return self.clip.class_embeddings((OTHERS, *class_names), self.templates)

    def episode_logits(self, images: torch.Tensor, class_ids: torch.Tensor, texts: torch.Tensor,
                       size: tuple[int, int]) -> torch.Tensor:
        """2-way logits [B, 2, *size] (others, the episode's class) of each image against its own pair of
        ``episode_texts`` rows; by default the images of one class at a time."""
        out = torch.empty(images.shape[0], 2, *size, device=images.device)
        for c in torch.unique(class_ids).tolist():
            rows = class_ids == c
            pair = texts[torch.tensor([0, 1 + c], device=texts.device)].to(images.device)
            out[rows] = self.logits(images[rows], pair, size).float()
        return out

    def episode_validation_step(self, batch: dict, index: int) -> None:
        _, names, _ = self.val_episodes[index]
        target = batch["target"]
        logits = self.episode_logits(batch["image"], batch["class_id"], self.episode_texts(names),
                                     tuple(target.shape[-2:]))
        self.episode_meters[index].update(logits.argmax(1), target, batch["class_id"])

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        if batch_size_of(batch) == 0:  # every sample of this batch was bad (counted by SkipMonitor)
            return
        if dataloader_idx >= len(self.val_benchmarks):
            self.episode_validation_step(batch, dataloader_idx - len(self.val_benchmarks))
            return
        masks = batch["mask"]
        logits = self.segment(batch["image"], self.val_benchmarks[dataloader_idx][1], tuple(masks.shape[-2:]))
        self.val_miou[dataloader_idx].update(logits.argmax(1), masks)

    def on_validation_epoch_end(self) -> None:
        scores = []
        for (name, _), metric in zip(self.val_benchmarks, self.val_miou, strict=True):
            if not metric.update_called and not distributed():  # every image of it was bad: no score, not 0
                continue
            score = metric.compute()["mIoU"].float()  # summed over DDP ranks: every rank must call it
            metric.reset()
            scores.append(score)
            self.log(f"val/mIoU/{name}", score)
        for (name, _, _), meter in zip(self.val_episodes, self.episode_meters, strict=True):
            miou, fb_iou = self.episode_scores(meter)
            scores.append(miou)
            self.log(f"val/mIoU/episodes/{name}", miou)
            self.log(f"val/FB-IoU/episodes/{name}", fb_iou)
        if scores:
            self.log("val/mIoU", torch.stack(scores).mean(), prog_bar=True)

    def episode_scores(self, meter: EpisodeMeter) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean foreground IoU, FB-IoU) as fractions, the counts summed over DDP ranks (every rank must call
        it); the meter is reset."""
        scores = meter.compute()
        meter.reset()
        return (torch.tensor(scores["miou"] / 100.0, device=self.device),
                torch.tensor(scores["fb_iou"] / 100.0, device=self.device))

    def text_generator(self) -> torch.Generator | None:
        """The noun-template draws: the global RNG alone, or under DDP one seeded by (seed, step) on every
        rank, so that all ranks build the same global texts."""
        if not distributed():
            return None
        return torch.Generator().manual_seed(int(self.cfg.seed) * 1_000_003 + int(self.global_step))

    # ---- optimisation
    def guard_loss(self, loss: torch.Tensor) -> torch.Tensor | None:
        """The loss, or a skipped step when it is non-finite on any rank (every rank decides the same). One
        process: None (Lightning skips the step). Under DDP, where Lightning refuses None, a zero loss over
        the trainable parameters keeps every rank in DDP's all-reduce and ``optimizer_step`` drops the update.
        Too many skips in a row stop the run."""
        if self.nonfinite.check(loss):
            return loss
        guard = self.nonfinite
        self.log("train/nonfinite_steps", float(guard.total))
        log.warning(
            "non-finite loss at step %d (rank %d): step skipped on every rank (%d in a row, limit %d)",
            self.global_step,
            rank(),
            guard.in_a_row,
            guard.limit,
        )
        if guard.exhausted:
            raise TrainingDivergedError(
                f"the loss was non-finite for {guard.limit} steps in a row (step "
                f"{self.global_step}): lower optim.lr, check the data, or try "
                f"trainer.precision=32-true"
            )
        return self.empty_batch_loss() if distributed() else None

    def optimizer_step(self, epoch: int, batch_idx: int, optimizer, optimizer_closure=None) -> None:
        """Under DDP: run the step's forward and backward on every rank, then update only if no rank saw a
        non-finite loss (``guard_loss``)."""
        if not distributed() or optimizer_closure is None:
            return super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        result = optimizer_closure()
        if self.nonfinite.skip_update:
            optimizer.zero_grad()
            return None
        return optimizer.step(closure=lambda: result)

    def empty_batch_loss(self) -> torch.Tensor:
        """Zero, but touching every trainable parameter: a batch whose samples were all bad still takes part
        in DDP's gradient all-reduce (returning None would leave the other ranks waiting)."""
        zero = torch.zeros((), device=self.device)
        return sum((p.sum() * 0.0 for _, p in self.trainable_parameters()), zero)

    def trainable_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [(n, p) for n, p in self.named_parameters() if p.requires_grad]

    def lr_groups(self) -> list[tuple[list[tuple[str, nn.Parameter]], float]]:
        """(named parameters, lr multiplier) per group: one group at the base rate unless an objective
        splits."""
        return [(self.trainable_parameters(), 1.0)]

    def configure_optimizers(self) -> dict:
        return configure_optimization(
            self.lr_groups(), self.cfg.optim, int(self.trainer.estimated_stepping_batches),
            self.trainer.max_epochs,
        )
