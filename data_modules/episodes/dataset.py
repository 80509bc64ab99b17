"""``EpisodeSet``: the 2-way episodes of LSeg's zero-shot protocol (PASCAL-5i, COCO-20i, FSS-1000) and of the
embedded world, as a torch Dataset (lang-seg @ bb00b21, fewshot_data/ = HSNet's loaders).

An item is a dict: ``image`` float [3, size, size], ``target`` long [size, size] (1 = the episode's class,
0 = everything else, 255 = ignore), ``class_id`` (0-based, benchmark-wide), ``name`` (the query), and for
split "train" ``support_image``, ``support_target``, ``support_name`` (same transforms, never the query).

Targets, after the raw mask is resized nearest to (size, size):

* PASCAL-5i: fg = class + 1; the 255 boundary is 255 (ignore) for the test split, as pascal.py:40, 73-78
  (``extract_ignore_idx``) and common/evaluation.py:17-21 score it; for the train split it is background (0):
  ``extract_ignore_idx`` sets every pixel other than class + 1 to 0 in ``query_mask`` (pascal.py:75), and the
  training loss is ``nn.CrossEntropyLoss()`` on that mask (modules/lsegmentation_module_zs.py:55, 122-128,
  338-343; the ignore map is used by the meter only), so the official training sees boundaries as background.
* COCO-20i: fg = class + 1, no ignore (coco.py:94-95). FSS-1000: the thresholded mask (fss.py:83-87).
* synthetic: fg = class + 1 (raw ids), unlabeled (raw 0, the ADE20K ignore) -> 255 for test, 0 for train.

A missing or unreadable file gives a ``Skipped`` marker (data_modules/bad_samples.py); a missing dataset
folder raises FileNotFoundError with the expected layout. Images and masks are resized separately to the
square, so their original sizes are not compared (the official loaders do not compare them either).

Training draws: ``__getitem__`` takes an index (drawn for the epoch of ``set_epoch``) or the (epoch, index)
keys of data_modules/samplers.py's EpochSampler; the draw is a function of (seed, epoch, index) alone.
"""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import Dataset, default_collate

from data_modules.bad_samples import BadSample, Skipped, collate_with_events
from data_modules.benchmarks import benchmark as segmentation_benchmark
from data_modules.episodes import folds, lists, sampling
from data_modules.episodes.frames import (
    binary_target,
    load_image,
    read_fss_mask,
    read_index_mask,
    resize_mask,
)
from data_modules.episodes.layouts import LAYOUTS, locate
from data_modules.episodes.sampling import Episode

__all__ = ["EpisodeSet", "collate_episodes"]

log = logging.getLogger(__name__)
PASCAL_TEST_EPISODES = 1000  # pascal.py:29-30
COCO_TEST_EPISODES = 1000  # coco.py:29-30


class EpisodeSet(Dataset):
    """The episodes of ``benchmark`` ("pascal5i", "coco20i", "fss1000", "synthetic"; or pascal, coco, fss) for
    ``fold`` and ``split`` ("train" or "test"; "val" for FSS-1000's validation classes).

    ``root``: the HSNet data root (VOC2012/, COCO2014/, FSS-1000/) or the synthetic world's folder;
    ``coco_lists``: the folder of COCO-20i's ``{trn,val}/fold{i}.txt`` (converted) or ``.pkl`` (HSNet's)
    lists (default ``<root>/COCO2014/splits`` when it exists, else ``<root>/splits/coco``);
    ``episodes``: how many (default: 1000 for PASCAL and COCO test as officially, else the whole list; lists
    are cycled); ``seed``: the COCO test draw (``fix_randseed(0)`` officially) and the training draws.
    """

    def __init__(
        self,
        benchmark: str,
        root: str | Path,
        fold: int,
        split: str,
        size: int = 480,
        mean: Sequence[float] = (0.5,) * 3,
        std: Sequence[float] = (0.5,) * 3,
        seed: int = 0,
        coco_lists: str | Path | None = None,
        episodes: int | None = None,
    ) -> None:
        self.benchmark = folds.canonical(benchmark)
        self.split = folds.normalise_split(self.benchmark, split)
        self.fold = fold
        self.class_ids = folds.fold_classes(self.benchmark, fold, self.split)
        self.class_names = folds.class_names(self.benchmark)
        self.nclass = folds.spec(self.benchmark).nclass
        self.size, self.mean, self.std, self.seed = int(size), tuple(mean), tuple(std), int(seed)
        if episodes is not None and episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {episodes}")
        self.root = Path(root).expanduser()
        self.layout = LAYOUTS[self.benchmark]
        self.folder = locate(self.benchmark, self.root, self.split)
        self.epoch = 0
        self.train = self.split == "train"
        self.coco_classwise: dict[int, list[str]] = {}
        self.pools: dict[int, list[str]] = {}  # training supports per class
        self._requested = episodes
        listed = getattr(self, f"_list_{self.benchmark}")(coco_lists)
        if self.benchmark == "coco20i" and self.train:
            self.episodes: list[Episode] = []
            self.length = episodes or listed
        else:
            if not listed:
                raise FileNotFoundError(
                    f"{self.benchmark} ({self.split}, fold {fold}) under {self.folder} gives no episode. "
                    f"Expected layout:\n{self.layout.description}"
                )
            if self.train:
                listed = self._with_support(listed)
            default = PASCAL_TEST_EPISODES if self.benchmark == "pascal5i" and not self.train else len(listed)
            self.length = episodes or default
            self.episodes = listed if self.length == len(listed) else sampling.cycled(listed, self.length)

    # --- episode lists -------------------------------------------------------------------------------------
    def _list_pascal5i(self, _coco_lists) -> list[Episode]:
        if not self.train:
            return [Episode(n, c) for n, c in lists.pascal_list("val", self.fold)]
        out = []
        for f in range(folds.spec("pascal5i").nfolds):  # pascal.py:131-135: the other folds, in fold order
            if f != self.fold:
                out += [Episode(n, c) for n, c in lists.pascal_list("trn", f)]
        return out

    def _list_coco20i(self, coco_lists) -> list[Episode] | int:
        if coco_lists is not None:
            lists_dir = Path(coco_lists).expanduser()
        else:  # the text lists `data prepare coco20i` writes, else a copy of HSNet's pickles
            converted = self.root / "COCO2014" / "splits"
            lists_dir = converted if converted.is_dir() else self.root / "splits" / "coco"
        classwise = lists.coco_classwise(lists_dir, "trn" if self.train else "val", self.fold)
        if not self.train:
            n = self._requested or COCO_TEST_EPISODES
            return sampling.coco_test_draws(classwise, self.class_ids, n, self.seed)
        usable = {c: classwise.get(c, []) for c in self.class_ids}
        dropped = [c for c, pool in usable.items() if len(set(pool)) < 2]
        if dropped:
            log.warning(
                "coco20i fold %d: classes %s have fewer than two images; not drawn", self.fold, dropped
            )
        self.coco_classwise = {c: p for c, p in usable.items() if c not in dropped}
        self.coco_class_ids = [c for c in self.class_ids if c not in dropped]
        if not self.coco_class_ids:
            raise ValueError(f"coco20i training lists of fold {self.fold} hold no class with two images")
        return len({name for pool in classwise.values() for name in pool})  # coco.py:29-30, 75-79

    def _list_fss1000(self, _coco_lists) -> list[Episode]:
        which = {"train": "trn", "val": "val", "test": "test"}[self.split]
        first = folds.FSS_SPLITS[self.split][0]
        out, missing = [], []
        for i, cat in enumerate(lists.fss_categories(which)):
            d = self.folder / cat
            if not d.is_dir():
                missing.append(cat)
                continue
            for path in sampling.fss_listing(glob.glob(os.path.join(glob.escape(str(d)), "*"))):
                out.append(Episode(f"{cat}/{os.path.basename(path)}", first + i))
        if missing:
            log.warning(
                "fss1000 (%s): %d class folders missing under %s, e.g. %s; they have no episode",
                self.split,
                len(missing),
                self.folder,
                missing[0],
            )
        return out

    def _list_synthetic(self, _coco_lists) -> list[Episode]:
        bench = segmentation_benchmark("synthetic")
        names = tuple(bench.class_names(self.folder))
        if names != tuple(self.class_names):
            raise ValueError(
                f"{self.folder.parent / 'classnames.json'} lists {names}, not the world's classes"
            )
        split_dir = bench.split_name("train" if self.train else "val")
        out, bad = [], 0
        for pair in bench.pairs(self.folder, split_dir):
            try:
                raw = read_index_mask(pair.mask)
            except BadSample:
                bad += 1
                continue
            stem = pair.mask.name[: -len(".png")]
            out += [Episode(stem, c) for c in sampling.present_classes(raw, self.class_ids)]
        if bad:
            log.warning("synthetic (%s): %d unreadable masks; their images have no episode", self.split, bad)
        return out

    def _with_support(self, listed: list[Episode]) -> list[Episode]:
        """Training: keep the episodes whose class has another image to be the support."""
        self.pools = sampling.by_class(listed)
        keep = [e for e in listed if any(q != e.query for q in self.pools[e.class_id])]
        if not keep:
            raise ValueError(
                f"{self.benchmark} (train, fold {self.fold}): no class has two images to draw from"
            )
        if len(keep) < len(listed):
            log.warning(
                "%s (train): %d episodes have no other image of their class; dropped",
                self.benchmark,
                len(listed) - len(keep),
            )
        return keep

    # --- draws ---------------------------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """The epoch whose training draws integer indices get (the (epoch, index) keys carry their own)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def episode(self, index: int, epoch: int | None = None) -> tuple[Episode, str | None]:
        """(episode, support name or None) of ``index``, without reading any file."""
        if not 0 <= index < self.length:
            raise IndexError(f"episode {index} of {self.length}")
        if not self.train:
            return self.episodes[index], None
        g = sampling.episode_generator(self.seed, self.epoch if epoch is None else epoch, index)
        if self.benchmark == "coco20i":
            return sampling.coco_train_draw(self.coco_classwise, self.coco_class_ids, g)
        e = self.episodes[index]
        return e, sampling.draw_other(self.pools[e.class_id], e.query, g)

    # --- loading -------------------------------------------------------------------------------------------
    def _target(self, name: str, class_id: int) -> torch.Tensor:
        path = self.layout.mask(self.folder, name, self.split)
        keep = not self.train
        if self.benchmark == "fss1000":
            return resize_mask(read_fss_mask(path), self.size).long()
        mask = resize_mask(read_index_mask(path), self.size)
        if self.benchmark == "pascal5i":
            return binary_target(mask, class_id + 1, 255, keep)
        if self.benchmark == "coco20i":
            return binary_target(mask, class_id + 1)
        if mask.numel() and (mask.max() > self.nclass or mask.min() < 0):
            raise BadSample(
                "label_out_of_range", path, f"raw ids up to {int(mask.max())}; expected 0..{self.nclass}"
            )
        return binary_target(mask, class_id + 1, 0, keep)

    def _frame(self, name: str, class_id: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = load_image(self.layout.image(self.folder, name, self.split), self.size, self.mean, self.std)
        return image, self._target(name, class_id)

    def __getitem__(self, key: int | tuple[int, int]) -> dict | Skipped:
        epoch, index = key if isinstance(key, tuple) else (None, key)
        episode, support = self.episode(int(index), epoch)
        try:
            image, target = self._frame(episode.query, episode.class_id)
            item = {"image": image, "target": target, "class_id": episode.class_id, "name": episode.query}
            if support is not None:
                s_image, s_target = self._frame(support, episode.class_id)
                item.update(support_image=s_image, support_target=s_target, support_name=support)
        except BadSample as exc:
            return Skipped.of(exc)
        return item


def collate_episodes(items: list) -> dict:
    """Stack the good items; skips travel under ``EVENTS`` (data_modules/bad_samples.py)."""
    return collate_with_events(items, default_collate)
