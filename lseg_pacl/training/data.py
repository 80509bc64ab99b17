"""A run's DataModules, built from its config and spec (the input the model takes, the benchmarks' folders)
and the frozen-feature stores the run opened; nothing here looks at the model."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

from omegaconf import DictConfig

from data_modules.captions import CaptionDataModule, CocoCaptions
from data_modules.episode_data import EpisodeDataModule
from data_modules.feature_cache import FeatureStores
from data_modules.segmentation import SegmentationDataModule
from data_modules.shards import ShardSource, ShardStream
from data_modules.transforms import (
    caption_train_transform,
    segmentation_eval_transform,
    segmentation_train_transform,
)
from lseg_pacl.errors import ConfigError, MissingInputError
from lseg_pacl.training.inputs import episode_set, shard_sources
from lseg_pacl.training.lightning_compat import epoch_in_progress
from lseg_pacl.training.spec import RunSpec


def build_val_data(
    cfg: DictConfig, spec: RunSpec, train: tuple[str, Path, str, Callable] | None = None
) -> SegmentationDataModule:
    """The validation benchmarks (and, for mask-supervised objectives, the training split of ``train``)."""
    v = cfg.data.val
    transform = segmentation_eval_transform(v.image_size, spec.inputs.mean, spec.inputs.std)
    data = SegmentationDataModule(
        {b.name: b.folder for b in spec.benchmarks},
        v.split,
        transform,
        cfg.data.val_batch_size,
        cfg.data.num_workers,
        v.max_images,
        train=train,
        train_batch_size=cfg.data.batch_size,
        seed=cfg.seed,
        epoch_of=epoch_in_progress,
    )
    try:
        data.setup("validate")  # reads the file lists now: a wrong layout stops here, with its path
    except (FileNotFoundError, ValueError) as exc:
        raise MissingInputError(
            f"{exc}\n(set data.val.roots.<name>=DIR, data.root=DIR or DATA_ROOT)"
        ) from None
    return data


def _segmentation(cfg: DictConfig, spec: RunSpec, cache: FeatureStores | None) -> SegmentationDataModule:
    t = cfg.data.train
    transform = segmentation_train_transform(
        t.image_size, t.base_size, spec.inputs.mean, spec.inputs.std, tuple(t.scale_range), t.hflip
    )
    return build_val_data(cfg, spec, train=(t.dataset, spec.train_root, t.split, transform))


def _coco_captions(
    root: Path, split: str, transform, stores: FeatureStores | None, seed: int, rank: int, world_size: int
) -> CocoCaptions:
    if stores is None:
        return CocoCaptions(root, split, transform, seed=seed)
    return CocoCaptions(root, split, transform, token_store=stores.token_store, seed=seed,
                        records=stores.records)


def shard_stream(
    sources: list[ShardSource], transform, cfg: DictConfig, rank: int, world_size: int
) -> ShardStream:
    """Built for this process's place (so a split that does not fit the processes is caught there)."""
    t = cfg.data.train
    try:
        return ShardStream(
            sources,
            transform,
            cfg.data.batch_size,
            t.samples_per_epoch,
            cfg.data.num_workers,
            seed=cfg.seed,
            resampled=t.resampled,
            shuffle_buffer=t.shuffle_buffer,
            rank=rank,
            world_size=world_size,
        )
    except ValueError as exc:
        raise ConfigError(
            f"data.train (shards, {world_size} processes x {cfg.data.num_workers} workers): {exc}"
        ) from None


def _captions(cfg: DictConfig, spec: RunSpec, cache: FeatureStores | None) -> CaptionDataModule:
    t = cfg.data.train
    transform = caption_train_transform(
        t.image_size, spec.inputs.mean, spec.inputs.std, t.crop_scale_min, t.hflip
    )
    if t.format == "shards":
        make_train = partial(shard_stream, shard_sources(cfg), transform, cfg)
        where = "data.train.shards"
    else:
        make_train = partial(_coco_captions, spec.train_root, t.split, transform, cache, cfg.seed)
        where = f"{spec.train_root} (data.train.root)"
    data = CaptionDataModule(
        make_train,
        cfg.data.batch_size,
        cfg.data.num_workers,
        epoch_in_progress,
        val=build_val_data(cfg, spec),
        seed=cfg.seed,
    )
    try:
        data.setup("fit")
    except (FileNotFoundError, ValueError, KeyError) as exc:
        raise MissingInputError(f"cannot read the caption data ({where}): {exc}") from None
    return data


def _episodes(cfg: DictConfig, spec: RunSpec, cache: FeatureStores | None) -> EpisodeDataModule:
    """LSeg's zero-shot training: the seen classes' episodes of data.train.dataset at data.fold, validated on
    the dense benchmarks (if any) and on each episode benchmark's unseen classes."""
    mean, std = spec.inputs.mean, spec.inputs.std
    train = episode_set(cfg, cfg.data.train.dataset, spec.train_root, "train", mean, std)
    episodes = [episode_set(cfg, e.name, e.folder, "test", mean, std) for e in spec.episodes]
    return EpisodeDataModule(
        train,
        episodes,
        cfg.data.batch_size,
        cfg.data.val_batch_size,
        cfg.data.num_workers,
        cfg.seed,
        epoch_in_progress,
        dense=build_val_data(cfg, spec) if spec.benchmarks else None,
    )


TrainDataBuilder = Callable[
    [DictConfig, RunSpec, FeatureStores | None],
    SegmentationDataModule | CaptionDataModule | EpisodeDataModule,
]
TRAIN_FORMATS: dict[str, TrainDataBuilder] = {
    "coco": _captions,
    "shards": _captions,
    "segmentation": _segmentation,
    "episodes": _episodes,
}


def build_train_data(
    cfg: DictConfig, spec: RunSpec, cache: FeatureStores | None = None
) -> SegmentationDataModule | CaptionDataModule | EpisodeDataModule:
    """The training DataModule of data.train.format (with the validation benchmarks inside)."""
    return TRAIN_FORMATS[cfg.data.train.format](cfg, spec, cache)
