"""From a loaded config to the objects a run needs: the data (generating the synthetic world when asked)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from pathlib import Path

from omegaconf import DictConfig

from data_modules.benchmarks import benchmark, dataset_dir
from data_modules.captions import CaptionDataModule, CocoCaptions
from data_modules.segmentation import SegmentationDataModule
from data_modules.shards import ShardSource, ShardStream, expand_urls, is_local, local_path
from data_modules.transforms import (
    caption_train_transform,
    segmentation_eval_transform,
    segmentation_train_transform,
)
from lseg_pacl.config.loading import data_root
from lseg_pacl.errors import ConfigError, MissingInputError
from lseg_pacl.training.feature_caching import FeatureCachePlan, plan_feature_cache
from lseg_pacl.objectives.base import ZeroShotObjective

log = logging.getLogger(__name__)


def ensure_synthetic(cfg: DictConfig) -> None:
    """Write the embedded world if the config uses it and it is not there yet (a no-op when it is)."""
    syn = cfg.data.synthetic
    if not syn.enabled:
        return
    from data_modules.synthetic import generate, is_complete

    if not is_complete(syn.out, syn.seed, syn.n_train, syn.n_val, syn.size):
        log.info("generating the synthetic world into %s", syn.out)
        try:
            generate(syn.out, seed=syn.seed, n_train=syn.n_train, n_val=syn.n_val, size=syn.size)
        except FileExistsError as exc:
            raise ConfigError(f"{exc} (data.synthetic.out)") from None


def _check_size(size: int, module: ZeroShotObjective, key: str) -> None:
    if size % module.patch_size:
        raise ConfigError(f"{key}={size} must divide by the image encoder's patch size {module.patch_size}")


def val_roots(cfg: DictConfig, names: list[str] | None = None) -> dict[str, Path]:
    """Each benchmark's folder (default: the validation benchmarks): data.val.roots.<name>, else
    <data.root or $DATA_ROOT>/<standard>."""
    v = cfg.data.val
    out = {}
    for name in names if names is not None else v.datasets:
        bench = benchmark(name)
        root = data_root(v.roots.get(name), cfg.data.root, bench.folder, f"data.val.roots.{name}")
        out[name] = dataset_dir(bench, root)
    return out


def build_val_data(cfg: DictConfig, module: ZeroShotObjective,
                   train: tuple[str, Path, str, Callable] | None = None) -> SegmentationDataModule:
    """The validation benchmarks (and, for mask-supervised objectives, the training split of ``train``)."""
    v = cfg.data.val
    _check_size(v.image_size, module, "data.val.image_size")
    transform = segmentation_eval_transform(v.image_size, module.input_mean, module.input_std)
    data = SegmentationDataModule(val_roots(cfg), v.split, transform, cfg.data.val_batch_size, cfg.data.num_workers,
                                  v.max_images, train=train, train_batch_size=cfg.data.batch_size, seed=cfg.seed)
    try:
        data.setup("validate")  # reads the file lists now: a wrong layout stops here, with its path
    except (FileNotFoundError, ValueError) as exc:
        raise MissingInputError(f"{exc}\n(set data.val.roots.<name>=DIR, data.root=DIR or DATA_ROOT)") from None
    return data


def shard_sources(cfg: DictConfig) -> list[ShardSource]:
    try:
        return [ShardSource(tuple(expand_urls(s.urls)), float(s.weight)) for s in cfg.data.train.shards]
    except ValueError as exc:
        raise ConfigError(f"data.train.shards: {exc}") from None


def train_root(cfg: DictConfig) -> Path:
    t = cfg.data.train
    if t.format == "segmentation":
        bench = benchmark(t.dataset)
        return dataset_dir(bench, data_root(t.root, cfg.data.root, bench.folder, "data.train.root"))
    return data_root(t.root, cfg.data.root, "coco", "data.train.root")


def build_train_data(cfg: DictConfig, module: ZeroShotObjective) -> CaptionDataModule | SegmentationDataModule:
    t = cfg.data.train
    _check_size(t.image_size, module, "data.train.image_size")
    if t.format == "segmentation":
        transform = segmentation_train_transform(t.image_size, t.base_size, module.input_mean, module.input_std,
                                                 tuple(t.scale_range), t.hflip)
        return build_val_data(cfg, module, train=(t.dataset, train_root(cfg), t.split, transform))
    transform = caption_train_transform(t.image_size, module.input_mean, module.input_std, t.crop_scale_min, t.hflip)
    module.feature_cache = plan_feature_cache(cfg, module)
    if t.format == "shards":
        make_train = partial(_shard_stream, shard_sources(cfg), transform, cfg)
        where = "data.train.shards"
    else:
        root = train_root(cfg)
        make_train = partial(_coco_captions, root, t.split, transform, module.feature_cache, cfg.seed)
        where = f"{root} (data.train.root)"
    data = CaptionDataModule(make_train, cfg.data.batch_size, cfg.data.num_workers, val=build_val_data(cfg, module),
                             seed=cfg.seed)
    try:
        data.setup("fit")
    except (FileNotFoundError, ValueError, KeyError) as exc:
        raise MissingInputError(f"cannot read the caption data ({where}): {exc}") from None
    return data


def _coco_captions(root: Path, split: str, transform, cache: FeatureCachePlan | None, seed: int, rank: int,
                   world_size: int) -> CocoCaptions:
    data = CocoCaptions(root, split, transform, seed=seed)
    if cache is not None:
        data.token_store = cache.tokens_for(data)
    return data


def _shard_stream(sources: list[ShardSource], transform, cfg: DictConfig, rank: int, world_size: int) -> ShardStream:
    """Built once the Trainer knows the rank and world size (so a split that does not fit is caught there)."""
    t = cfg.data.train
    try:
        return ShardStream(sources, transform, cfg.data.batch_size, t.samples_per_epoch, cfg.data.num_workers,
                           seed=cfg.seed, resampled=t.resampled, shuffle_buffer=t.shuffle_buffer, rank=rank,
                           world_size=world_size)
    except ValueError as exc:
        raise ConfigError(f"data.train (shards, {world_size} processes x {cfg.data.num_workers} workers): "
                          f"{exc}") from None


def _check_remote(url: str, key: str) -> None:
    """The URL's scheme has a file system here (e.g. s3:// needs s3fs): otherwise stop now, not in a worker."""
    import fsspec

    protocol = url.split("://", 1)[0]
    try:
        fsspec.get_filesystem_class(protocol)
    except (ImportError, ValueError) as exc:
        raise MissingInputError(f"{key}: cannot read {protocol}:// URLs here ({exc}); install the fsspec "
                                f"package for {protocol}, or copy the shards to a local path") from None


def _check_shards(cfg: DictConfig) -> None:
    for i, src in enumerate(shard_sources(cfg)):
        for protocol_url in {u.split("://", 1)[0]: u for u in src.urls if not is_local(u)}.values():
            _check_remote(protocol_url, f"data.train.shards[{i}]")
        local = [u for u in src.urls if is_local(u)]
        missing = [u for u in local if not local_path(u).is_file()]
        if local and len(missing) == len(local):
            raise MissingInputError(
                f"caption shards not found: none of the {len(local)} shards of data.train.shards[{i}] exists "
                f"(first: {missing[0]}). Expected webdataset tars as img2dataset writes them (00000.tar holding "
                f"KEY.jpg, KEY.txt, KEY.json per sample), given as brace patterns, lists or URLs")
        if missing:
            log.warning("data.train.shards[%d]: %d of %d shards are missing (first: %s); they are counted and "
                        "skipped as missing_shard", i, len(missing), len(local), missing[0])


def check_inputs(cfg: DictConfig, train: bool = True) -> None:
    """Fail within seconds, before any model is built, when data the run needs is missing."""
    ensure_synthetic(cfg)
    t = cfg.data.train
    if train and t.format == "shards":
        _check_shards(cfg)
    elif train and t.format == "segmentation":
        require_layout(t.dataset, train_root(cfg), t.split, "data.train.root")
    elif train:
        ann = train_root(cfg) / "annotations" / f"captions_{t.split}.json"
        if not ann.is_file():
            raise MissingInputError(f"caption data not found: {ann} is missing. Download COCO captions "
                                    f"(annotations/captions_{t.split}.json and {t.split}/*.jpg) and pass "
                                    f"data.train.root=DIR, or set DATA_ROOT (or data.root) to the folder holding coco/")
    check_benchmarks(cfg)


def check_benchmarks(cfg: DictConfig, names: list[str] | None = None) -> dict[str, Path]:
    """The benchmarks' folders (default: the validation benchmarks), each checked against its layout."""
    roots = val_roots(cfg, names)
    for name, folder in roots.items():
        require_layout(name, folder, cfg.data.val.split or benchmark(name).default_split, f"data.val.roots.{name}")
    return roots


def require_layout(name: str, folder: Path, split: str, key: str) -> None:
    """Stop with the expected layout when ``folder`` is not a readable copy of benchmark ``name``."""
    bench = benchmark(name)
    why = bench.missing(folder, split)
    if why:
        raise MissingInputError(f"{name} not found: {why}. Expected layout:\n{bench.expected_layout(split)}\n"
                                f"Pass {key}=DIR, or set data.root / DATA_ROOT to the folder holding {bench.folder}/")
