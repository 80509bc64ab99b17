"""From a loaded config to the objects a run needs: the data (generating the synthetic world when asked)."""

from __future__ import annotations

import logging

from omegaconf import DictConfig

from data_modules.captions import CaptionDataModule
from data_modules.segmentation import SegmentationDataModule
from data_modules.transforms import caption_train_transform, segmentation_eval_transform
from lseg_pacl.config import data_root
from lseg_pacl.errors import ConfigError, MissingInputError
from lseg_pacl.models.clip import ClipBackbone

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


def _check_size(size: int, clip: ClipBackbone, key: str) -> None:
    if size % clip.patch_size:
        raise ConfigError(f"{key}={size} must divide by the patch size {clip.patch_size} of {clip.name}")


def build_val_data(cfg: DictConfig, clip: ClipBackbone) -> SegmentationDataModule:
    v = cfg.data.val
    _check_size(v.image_size, clip, "data.val.image_size")
    root = data_root(v.root, "ADEChallengeData2016", "data.val.root")
    try:
        data = SegmentationDataModule(v.dataset, root, v.split, segmentation_eval_transform(
            v.image_size, clip.mean, clip.std), cfg.data.val_batch_size, cfg.data.num_workers, v.max_images)
        data.setup("validate")  # reads the file lists now: a wrong layout stops here, with its path
    except (FileNotFoundError, ValueError) as exc:
        raise MissingInputError(f"{exc} (data.val.root)") from None
    return data


def build_train_data(cfg: DictConfig, clip: ClipBackbone) -> CaptionDataModule:
    t = cfg.data.train
    _check_size(t.image_size, clip, "data.train.image_size")
    root = data_root(t.root, "coco", "data.train.root")
    transform = caption_train_transform(t.image_size, clip.mean, clip.std, t.crop_scale_min, t.hflip)
    data = CaptionDataModule(root, t.split, transform, cfg.data.batch_size, cfg.data.num_workers,
                             val=build_val_data(cfg, clip))
    try:
        data.setup("fit")
    except (FileNotFoundError, ValueError, KeyError) as exc:
        raise MissingInputError(f"cannot read captions under {root}: {exc} (data.train.root)") from None
    return data


def check_inputs(cfg: DictConfig, train: bool = True) -> None:
    """Fail within seconds, before any model is built, when data the run needs is missing."""
    ensure_synthetic(cfg)
    if train:
        t = cfg.data.train
        ann = data_root(t.root, "coco", "data.train.root") / "annotations" / f"captions_{t.split}.json"
        if not ann.is_file():
            raise MissingInputError(f"caption data not found: {ann} is missing. Download COCO captions "
                                    f"(annotations/captions_{t.split}.json and {t.split}/*.jpg) and pass "
                                    f"data.train.root=DIR, or set DATA_ROOT to the folder holding coco/")
    val_root = data_root(cfg.data.val.root, "ADEChallengeData2016", "data.val.root")
    if not val_root.is_dir():
        raise MissingInputError(f"segmentation data not found at {val_root}: download ADE20K "
                                f"(ADEChallengeData2016) and pass data.val.root=DIR, or set DATA_ROOT to its parent")
