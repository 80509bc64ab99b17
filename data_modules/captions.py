"""Image-caption pairs in the COCO captions layout, and the DataModule that trains on captions (this layout or
streamed shards, shards.py).

Layout: ``<root>/annotations/captions_<split>.json`` (images[], annotations[] with image_id and caption)
beside ``<root>/<split>/*.jpg``. One caption is drawn per image per epoch. PACL's noun-prompt augmentation
uses an annotation's ``nouns`` list where it has one (the synthetic world writes the exact nouns of each
caption), else the nouns found in the caption (nouns.py, offline).
"""

from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from data_modules.bad_samples import BadSample, Skipped, collate_with_events
from data_modules.feature_cache import TokenStore
from data_modules.images import read_rgb
from data_modules.nouns import extract_nouns
from data_modules.ranks import place
from data_modules.samplers import sample_generator, train_loader
from data_modules.shards import ResumableShardLoader, ShardStream
from data_modules.transforms import seeded

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CaptionRecord:
    file: Path
    captions: tuple[str, ...]
    nouns: tuple[tuple[str, ...] | None, ...]  # per caption; None when the annotation has no nouns list


def _image_id(entry: dict, key: str) -> int | None:
    try:
        return int(entry[key])
    except (KeyError, TypeError, ValueError):
        return None


CAPTION_SPLITS = {"train": "train2017", "val": "val2017"}  # the words a newcomer types -> COCO's names


def caption_split(split: str | None) -> str:
    """COCO's name of a split: ``train`` (or none) is train2017, ``val`` val2017; others as they are."""
    return CAPTION_SPLITS.get(split or "train", split)


def read_coco_captions(
    root: Path, split: str, problems: list[tuple[str, str]] | None = None
) -> list[CaptionRecord]:
    """Every image of a COCO-captions split with at least one non-empty caption, in image-id order.

    Empty or malformed annotations and images without a caption are skipped, counted in the log, and appended
    to ``problems`` as (reason, where) when a list is given."""
    split = caption_split(split)
    ann_file = root / "annotations" / f"captions_{split}.json"
    image_dir = root / split
    if not ann_file.is_file():
        raise FileNotFoundError(
            f"caption annotations not found: {ann_file} (expected the COCO captions layout: "
            f"<root>/annotations/captions_<split>.json beside <root>/<split>/*.jpg)"
        )
    try:
        data = json.loads(ann_file.read_bytes().decode("utf-8"))
        annotations, images = list(data.get("annotations", [])), list(data.get("images", []))
    except (UnicodeDecodeError, ValueError, AttributeError, TypeError) as exc:
        raise ValueError(f"{ann_file} is not a UTF-8 COCO captions JSON file: {exc}") from None
    found: list[tuple[str, str]] = []
    caps: dict[int, list[tuple[str, tuple[str, ...] | None]]] = defaultdict(list)
    for n, ann in enumerate(annotations):
        ann = ann if isinstance(ann, dict) else {}
        text, image_id = ann.get("caption"), _image_id(ann, "image_id")
        text = text.strip() if isinstance(text, str) else ""
        if not text or image_id is None:
            found.append(
                (
                    "empty_caption" if image_id is not None else "bad_annotation",
                    f"{ann_file}#annotations[{n}] (id {ann.get('id')})",
                )
            )
            continue
        nouns = ann.get("nouns")
        caps[image_id].append((text, tuple(nouns) if isinstance(nouns, list) else None))
    records = []
    listed = [
        (i, im)
        for im in images
        if isinstance(im, dict)
        and (i := _image_id(im, "id")) is not None
        and isinstance(im.get("file_name"), str)
    ]
    if len(listed) < len(images):
        found += [("bad_annotation", f"{ann_file}#images (entries without id or file_name)")] * (
            len(images) - len(listed)
        )
    for image_id, img in sorted(listed, key=lambda pair: pair[0]):
        pairs = caps.get(image_id)
        if pairs:
            records.append(
                CaptionRecord(
                    image_dir / img["file_name"], tuple(p[0] for p in pairs), tuple(p[1] for p in pairs)
                )
            )
        else:
            found.append(("no_caption", str(image_dir / img["file_name"])))
    if found:
        counts = Counter(reason for reason, _ in found)
        log.warning("%s: skipped %s", ann_file, ", ".join(f"{n} {r}" for r, n in sorted(counts.items())))
        if problems is not None:
            problems.extend(found)
    if not records:
        raise ValueError(f"{ann_file} holds no image with a caption")
    return records


class CocoCaptions(Dataset):
    """(image, one caption drawn at random, that caption's nouns, the sample's index) per image; a bad image
    gives ``Skipped``. With a ``token_store`` (feature_cache.py), a sample whose frozen patch tokens are
    stored comes as ``tokens`` instead of ``image``, and its image is not read at all."""

    def __init__(
        self,
        root: str | Path,
        split: str,
        transform: Callable,
        token_store: TokenStore | None = None,
        seed: int = 0,
        records: Sequence[CaptionRecord] = (),
    ) -> None:
        self.root = Path(root)
        # the split's records, read here unless the caller has them (e.g. the feature cache that indexes them)
        self.records = list(records) or read_coco_captions(self.root, split)
        self.transform = transform
        self.token_store = token_store
        self.seed = seed

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key: int | tuple[int, int]) -> dict | Skipped:
        """``key``: an index, or (epoch, index) from the training sampler, which fixes the sample's random
        draws (caption, augmentation) as a function of (seed, epoch, index)."""
        g = sample_generator(self.seed, key) if isinstance(key, tuple) else None
        index = key[1] if isinstance(key, tuple) else key
        rec = self.records[index]
        pick = int(torch.randint(len(rec.captions), (), generator=g).item())
        caption, nouns = rec.captions[pick], rec.nouns[pick]
        sample = {
            "caption": caption,
            "nouns": list(nouns) if nouns is not None else extract_nouns(caption),
            "index": index,
        }
        if self.token_store is not None and self.token_store.has(index):
            return {**sample, "tokens": self.token_store.read(index)}
        try:
            pixels = read_rgb(rec.file, reduction=getattr(self.transform, "max_decode_reduction", None))
        except BadSample as exc:
            return Skipped.of(exc)
        return {**sample, "image": seeded(self.transform, g, image=pixels)["image"]}


def caption_vocabulary(records: list[CaptionRecord]) -> tuple[list[str], list[str]]:
    """(every caption, every distinct noun, sorted) of a caption split."""
    captions = [c for rec in records for c in rec.captions]
    nouns = {
        n
        for rec in records
        for caption, listed in zip(rec.captions, rec.nouns, strict=True)
        for n in (listed if listed is not None else extract_nouns(caption))
    }
    return captions, sorted(nouns)


def _stack(batch: list[dict]) -> dict:
    """Samples with images first, then those served as cached tokens (the order within a batch is free: each
    caption stays with its own image); ``index`` follows the same order."""
    live = [b for b in batch if "image" in b]
    cached = [b for b in batch if "tokens" in b]
    ordered = live + cached
    out = {
        "caption": [b["caption"] for b in ordered],
        "nouns": [b["nouns"] for b in ordered],
        "index": torch.tensor([b["index"] for b in ordered], dtype=torch.long),
    }
    if live:
        out["image"] = torch.stack([b["image"] for b in live])
    if cached:
        out["tokens"] = torch.stack([b["tokens"] for b in cached])
    return out


def collate_captions(items: list) -> dict:
    return collate_with_events(items, _stack)


class CaptionDataModule(L.LightningDataModule):
    """Trains on captions; validates through a segmentation DataModule (zero-shot), when one is given.

    ``make_train(rank, world_size)`` builds the training set for this process's place (data_modules/ranks.py):
    a map-style ``CocoCaptions`` or a ``ShardStream`` (which yields whole batches and follows ``set_epoch``).
    ``epoch_of(trainer)`` is the epoch the Trainer is in (the training order and the shard order depend on
    it).
    """

    def __init__(
        self,
        make_train: Callable[[int, int], Dataset],
        batch_size: int,
        num_workers: int,
        epoch_of: Callable[[L.Trainer], int],
        val: L.LightningDataModule | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.seed = seed
        self.make_train = make_train
        self.batch_size, self.num_workers = batch_size, num_workers
        self.epoch_of = epoch_of
        self.val = val
        self.train_set: Dataset | None = None
        self._built_for: tuple[int, int] | None = None

    def setup(self, stage: str | None = None) -> None:
        here = place()  # the process group's once it is up (setup may run earlier, to fail fast)
        if stage in (None, "fit") and (self.train_set is None or self._built_for != here):
            self.train_set, self._built_for = self.make_train(*here), here
        if self.val is not None:
            self.val.setup("validate")

    def current_epoch(self) -> int:
        return self.epoch_of(self.trainer) if self.trainer is not None else 0

    def set_epoch(self, epoch: int) -> None:
        """Called before each training epoch's DataLoader iterator is made (the shard order depends on it)."""
        if isinstance(self.train_set, ShardStream):
            self.train_set.set_epoch(epoch)

    def train_dataloader(self) -> DataLoader:
        if isinstance(self.train_set, ShardStream):
            self.set_epoch(self.current_epoch())  # the first iterator is made before on_train_epoch_start
            # fresh workers each epoch
            return ResumableShardLoader(self.train_set, self.num_workers)
        return train_loader(
            self.train_set, self.current_epoch, self.seed, self.batch_size, self.num_workers, collate_captions
        )

    def val_dataloader(self) -> list[DataLoader]:
        if self.val is None:
            return []
        return self.val.val_dataloader()
