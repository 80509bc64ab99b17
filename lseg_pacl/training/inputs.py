"""Where a run's data is, and whether it is there: checked within seconds, before any model is built, with a
message that says what to provide and where (the layout, the config key, DATA_ROOT)."""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path

from omegaconf import DictConfig

from data_modules.benchmarks import benchmark, dataset_dir
from data_modules.captions import caption_split
from data_modules.shards import ShardSource, expand_urls, is_local, local_path
from lseg_pacl.errors import BadDataError, ConfigError, MissingInputError

log = logging.getLogger(__name__)


def data_root(explicit: str | None, common: str | None, sub: str, key: str) -> Path:
    """An explicit root, else <data.root>/<sub>, else $DATA_ROOT/<sub>; an error saying what to set
    otherwise."""
    if explicit:
        return Path(explicit).expanduser()
    base = common or os.environ.get("DATA_ROOT")
    if base:
        return Path(base).expanduser() / sub
    raise ConfigError(
        f"no dataset root given for {sub}: pass {key}=DIR, or data.root=DIR, or set the DATA_ROOT "
        f"environment variable (then <root>/{sub} is used)"
    )


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


def episode_root(cfg: DictConfig, explicit: str | None, key: str) -> Path:
    """An episode benchmark's root: the folder holding HSNet's layout (VOC2012/, COCO2014/, FSS-1000/),
    which is ``explicit``, else data.root, else $DATA_ROOT."""
    if explicit:
        return Path(explicit).expanduser()
    base = cfg.data.root or os.environ.get("DATA_ROOT")
    if base:
        return Path(base).expanduser()
    raise ConfigError(
        f"no root for the episode benchmarks: pass {key}=DIR (the folder holding VOC2012/, COCO2014/ or "
        f"FSS-1000/ as HSNet lays them out), or data.root=DIR, or set DATA_ROOT"
    )


def episode_roots(cfg: DictConfig, names: list[str] | None = None) -> dict[str, Path]:
    """Each episode benchmark's root (default: data.val.episodes), from data.val.roots.<name> or the data
    root; an error when data.fold is not set."""
    names = list(cfg.data.val.episodes) if names is None else names
    if names and cfg.data.fold is None:
        raise ConfigError(f"episode benchmarks ({', '.join(names)}) need data.fold=F: the fold whose classes "
                          f"are the unseen ones")
    return {n: episode_root(cfg, cfg.data.val.roots.get(n), f"data.val.roots.{n}") for n in names}


def episode_set(cfg: DictConfig, name: str, root: Path, split: str, mean, std):
    """One episode benchmark's episodes at data.fold; a missing layout or list stops with what to provide."""
    from data_modules.episodes.dataset import EpisodeSet

    e = cfg.data.episodes
    try:
        return EpisodeSet(name, root, int(cfg.data.fold), split, size=e.size, mean=tuple(mean),
                          std=tuple(std),
                          seed=int(cfg.seed) if split == "train" else 0,  # test draws: the official seed 0
                          coco_lists=e.coco_lists,
                          episodes=e.test_episodes if split == "test" else None)
    except (FileNotFoundError, ValueError) as exc:
        raise MissingInputError(f"{name} (fold {cfg.data.fold}, {split}): {exc}") from None
    except pickle.UnpicklingError as exc:  # a fold list that is not plain data (refused, nothing ran)
        raise BadDataError(f"{name} (fold {cfg.data.fold}, {split}): {exc}") from None


def train_root(cfg: DictConfig) -> Path:
    t = cfg.data.train
    if t.format == "episodes":
        return episode_root(cfg, t.root, "data.train.root")
    if t.format == "segmentation":
        bench = benchmark(t.dataset)
        return dataset_dir(bench, data_root(t.root, cfg.data.root, bench.folder, "data.train.root"))
    return data_root(t.root, cfg.data.root, "coco", "data.train.root")


def shard_sources(cfg: DictConfig) -> list[ShardSource]:
    try:
        return [ShardSource(tuple(expand_urls(s.urls)), float(s.weight)) for s in cfg.data.train.shards]
    except ValueError as exc:
        raise ConfigError(f"data.train.shards: {exc}") from None


def _check_remote(url: str, key: str) -> None:
    """The URL's scheme has a file system here (e.g. s3:// needs s3fs): otherwise stop now, not in a
    worker."""
    import fsspec

    protocol = url.split("://", 1)[0]
    try:
        fsspec.get_filesystem_class(protocol)
    except (ImportError, ValueError) as exc:
        raise MissingInputError(
            f"{key}: cannot read {protocol}:// URLs here ({exc}); install the fsspec "
            f"package for {protocol}, or copy the shards to a local path"
        ) from None


def _check_shards(cfg: DictConfig) -> None:
    for i, src in enumerate(shard_sources(cfg)):
        for protocol_url in {u.split("://", 1)[0]: u for u in src.urls if not is_local(u)}.values():
            _check_remote(protocol_url, f"data.train.shards[{i}]")
        local = [u for u in src.urls if is_local(u)]
        missing = [u for u in local if not local_path(u).is_file()]
        if local and len(missing) == len(local):
            raise MissingInputError(
                f"caption shards not found: none of the {len(local)} shards of data.train.shards[{i}] exists "
                f"(first: {missing[0]}). Expected webdataset tars as img2dataset writes them (00000.tar "
                f"holding KEY.jpg, KEY.txt, KEY.json per sample), given as brace patterns, lists or URLs"
            )
        if missing:
            log.warning(
                "data.train.shards[%d]: %d of %d shards are missing (first: %s); they are counted and "
                "skipped as missing_shard",
                i,
                len(missing),
                len(local),
                missing[0],
            )


def check_inputs(cfg: DictConfig, train: bool = True) -> None:
    """Fail within seconds, before any model is built, when data the run needs is missing."""
    ensure_synthetic(cfg)
    t = cfg.data.train
    if train and t.format == "shards":
        _check_shards(cfg)
    elif train and t.format == "segmentation":
        split = benchmark(t.dataset).split_name(t.split)
        require_layout(t.dataset, train_root(cfg), split, "data.train.root")
    elif train and t.format == "episodes":
        if cfg.data.fold is None:
            raise ConfigError(
                "data.train.format=episodes needs data.fold=F (trained on the other folds' classes)"
            )
        episode_set(cfg, t.dataset, train_root(cfg), "train", (0.0,) * 3, (1.0,) * 3)
    elif train:
        split = caption_split(t.split)
        ann = train_root(cfg) / "annotations" / f"captions_{split}.json"
        if not ann.is_file():
            raise MissingInputError(
                f"caption data not found: {ann} is missing. Download COCO captions "
                f"(annotations/captions_{split}.json and {split}/*.jpg) and pass "
                f"data.train.root=DIR, or set DATA_ROOT (or data.root) to the folder holding coco/"
            )
    check_benchmarks(cfg)
    for name, root in episode_roots(cfg).items():
        episode_set(cfg, name, root, "test", (0.0,) * 3, (1.0,) * 3)


def check_benchmarks(cfg: DictConfig, names: list[str] | None = None) -> dict[str, Path]:
    """The benchmarks' folders (default: the validation benchmarks), each checked against its layout."""
    roots = val_roots(cfg, names)
    for name, folder in roots.items():
        require_layout(
            name, folder, benchmark(name).split_name(cfg.data.val.split), f"data.val.roots.{name}"
        )
    return roots


def require_layout(name: str, folder: Path, split: str, key: str) -> None:
    """Stop with the expected layout when ``folder`` is not a readable copy of benchmark ``name``."""
    bench = benchmark(name)
    why = bench.missing(folder, split)
    if why:
        raise MissingInputError(
            f"{name} not found: {why}. Expected layout:\n{bench.expected_layout(split)}\n"
            f"Pass {key}=DIR, or set data.root / DATA_ROOT to the folder holding {bench.folder}/"
        )
