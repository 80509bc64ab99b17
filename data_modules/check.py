"""``lseg-pacl data check``: read every sample of a dataset the way training would, before a long run.

The summary: ``images`` (samples listed), ``pairs_ok`` (usable image/mask or image/caption pairs),
``label_hist`` (pixel count per mapped class id, ignored pixels under the benchmark's ignore index: "255", or
"65535" for ade847 and pc459; null for caption data), ``problems`` (file and reason, the first ``MAX_LISTED``)
and ``problem_counts`` (per reason, all of them).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader, Dataset

from data_modules.bad_samples import BadSample, Skipped
from data_modules.benchmarks import BENCHMARKS, IGNORE_INDEX
from data_modules.captions import caption_split, read_coco_captions
from data_modules.images import read_rgb
from data_modules.segmentation import SegmentationSet
from data_modules.shards import expand_urls, parse_sample, read_shard
from data_modules.workers import worker_options

MAX_LISTED = 1000


class _SegScan(Dataset):
    """Per sample: pixels per class id 0..C-1, then the ignored pixels in slot C (any ignore index)."""

    def __init__(self, data: SegmentationSet) -> None:
        self.data = data
        self.num_classes = len(data.class_names)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> dict:
        try:
            loaded = self.data.load(index)
        except BadSample as exc:
            return {"ok": 0, "problems": [(exc.reason, exc.file, exc.detail)]}
        ids = loaded.mask.ravel().astype(np.int64)
        c = self.num_classes
        hist = np.bincount(np.where(ids == self.data.ignore_index, c, ids), minlength=c + 1)
        return {"ok": 1, "hist": hist, "problems": [(r, f, "") for r, f in loaded.notes]}


class _CocoScan(Dataset):
    def __init__(self, root: Path, split: str) -> None:
        self.listing: list[tuple[str, str]] = []  # problems of the annotation file itself
        self.records = read_coco_captions(root, split, self.listing)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        rec = self.records[index]
        try:
            read_rgb(rec.file)
        except BadSample as exc:
            return {"ok": 0, "problems": [(exc.reason, exc.file, exc.detail)]}
        return {"ok": len(rec.captions), "problems": []}


class _ShardScan(Dataset):
    def __init__(self, urls: list[str]) -> None:
        self.urls = urls

    def __len__(self) -> int:
        return len(self.urls)

    def __getitem__(self, index: int) -> dict:
        url, events, ok, seen = self.urls[index], [], 0, 0
        for key, members in read_shard(url, events):
            seen += 1
            try:
                parse_sample(url, key, members)
                ok += 1
            except BadSample as exc:
                events.append((exc.reason, exc.file))
        return {"ok": ok, "seen": seen, "problems": [(r, f, "") for r, f in events]}


class _EpisodeScan(Dataset):
    """Per episode, as training or evaluation reads it (image, support, binary target at the episode size):
    target pixels per value 0 (others), 1 (the class), 255 (ignored)."""

    def __init__(self, data: Dataset) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> dict:
        item = self.data[index]
        if isinstance(item, Skipped):
            return {"ok": 0, "problems": [(item.reason, item.file, item.detail)]}
        values = item["target"].flatten().numpy().astype(np.int64)
        hist = np.bincount(np.where(values == IGNORE_INDEX, 2, values), minlength=3)
        return {"ok": 1, "hist": hist, "problems": []}


def check_episodes(dataset: str, root: str, split: str | None = None, fold: int | None = None,
                   workers: int = 0, coco_lists: str | None = None) -> dict:
    """Every episode of each fold (or of ``fold``) of one split ("test" by default, or "train")."""
    from data_modules.episodes import EpisodeSet
    from data_modules.episodes.folds import fold_count

    split = split or "test"
    folds = [fold] if fold is not None else list(range(fold_count(dataset)))
    per_fold, counts, listed, hist, total, ok_all = {}, Counter(), [], np.zeros(3, dtype=np.int64), 0, 0
    for f in folds:
        data = EpisodeSet(dataset, root, f, split, coco_lists=coco_lists)
        ok, _, c, problems, h = _scan(_EpisodeScan(data), workers, bins=3)
        per_fold[str(f)] = {"episodes": len(data), "ok": ok}
        total, ok_all, hist = total + len(data), ok_all + ok, hist + h
        counts.update(c)
        listed += problems[: MAX_LISTED - len(listed)]
    return {"dataset": dataset, "root": str(root), "split": split, "folds": per_fold, "images": total,
            "pairs_ok": ok_all,
            "label_hist": {k: int(n) for k, n in zip(("0", "1", "255"), hist, strict=True) if n},
            "ignore_index": IGNORE_INDEX, "problems": listed, "problem_counts": dict(counts)}


def shard_urls(root: str) -> list[str]:
    """A folder's ``*.tar`` files, or a brace pattern / URL list given directly."""
    path = Path(root).expanduser()
    if path.is_dir():
        urls = sorted(str(p) for p in path.glob("*.tar"))
        if not urls:
            raise FileNotFoundError(f"no *.tar shards in {path} (expected img2dataset's 00000.tar, ...)")
        return urls
    return expand_urls([root])


def _as_is(item: dict) -> dict:
    return item


def _scan(dataset: Dataset, workers: int, bins: int = 0) -> tuple[int, int, Counter, list, np.ndarray]:
    """(usable pairs, samples seen in shards, problem counts, listed problems, label histogram of
    ``bins``)."""
    ok, counts, listed, hist, seen = 0, Counter(), [], np.zeros(bins, dtype=np.int64), 0
    loader = DataLoader(dataset, batch_size=None, num_workers=workers, collate_fn=_as_is,
                        **worker_options(workers))
    for item in loader:
        ok += item["ok"]
        seen += item.get("seen", 0)
        if "hist" in item:
            hist += np.asarray(item["hist"], dtype=np.int64)
        for reason, file, detail in item["problems"]:
            counts[reason] += 1
            if len(listed) < MAX_LISTED:
                listed.append({"file": file, "reason": reason, **({"detail": detail} if detail else {})})
    return ok, seen, counts, listed, hist


def check_dataset(dataset: str, root: str, split: str | None = None, workers: int = 0) -> dict:
    """Scan one dataset; raises FileNotFoundError/ValueError when it is not there at all."""
    if dataset in BENCHMARKS:
        data = SegmentationSet(dataset, root, split, transform=None)
        c = len(data.class_names)
        ok, _, counts, listed, hist = _scan(_SegScan(data), workers, bins=c + 1)
        label_hist = {str(i if i < c else data.ignore_index): int(n) for i, n in enumerate(hist) if n}
        return {"dataset": dataset, "root": str(data.dir), "split": data.split, "images": len(data),
                "pairs_ok": ok, "label_hist": label_hist, "ignore_index": data.ignore_index,
                "problems": listed, "problem_counts": dict(counts)}
    if dataset == "coco_captions":
        split = caption_split(split)
        scan = _CocoScan(Path(root).expanduser(), split)
        ok, _, counts, listed, _ = _scan(scan, workers)
        for reason, where in scan.listing:
            counts[reason] += 1
            if len(listed) < MAX_LISTED:
                listed.append({"file": where, "reason": reason})
        return {"dataset": dataset, "root": root, "split": split, "images": len(scan), "pairs_ok": ok,
                "label_hist": None, "problems": listed, "problem_counts": dict(counts)}
    if dataset == "shards":
        urls = shard_urls(root)
        ok, seen, counts, listed, _ = _scan(_ShardScan(urls), workers)
        return {"dataset": dataset, "root": root, "shards": len(urls), "images": seen, "pairs_ok": ok,
                "label_hist": None, "problems": listed, "problem_counts": dict(counts)}
    from data_modules.episodes.folds import EPISODE_BENCHMARKS

    if dataset in EPISODE_BENCHMARKS:
        return check_episodes(dataset, root, split, workers=workers)
    raise ValueError(f"unknown dataset '{dataset}'")
