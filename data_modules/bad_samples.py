"""Bad input is counted, logged and skipped rather than crashing a long run.

A dataset that meets a bad sample (unreadable image, bad mask, empty caption, missing file...) returns a
``Skipped`` marker instead of the sample; the collate functions drop markers and pass them on in the batch
under ``EVENTS`` as ``(reason, file)`` pairs. The events travel with the batch out of the DataLoader workers
into the main process, where ``SkipMonitor`` counts them by reason, logs each reason's first file, and stops
the run with a ``DataQualityError`` once the skipped share exceeds ``data.max_bad_fraction``.

Some events are notes rather than skips (``NOTE_REASONS``): the sample was used after a documented repair.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)

EVENTS = "data_events"  # batch key holding [(reason, file), ...]
SHARDS = "data_shards"  # batch key: shards opened since the previous batch (shard streams)
EXHAUSTED = "data_exhausted"  # batch key: why a stream ended before its epoch did
NOTE_REASONS = frozenset({"exif_ignored"})  # repaired and used, not skipped
SHARD_REASONS = frozenset({"missing_shard", "bad_shard"})  # a share of the shards, not of the samples
MIN_SEEN = 100  # the bad share is checked once this many samples were seen (and at every epoch end)
MIN_SHARDS = 10  # likewise for the share of failed shards


class BadSample(Exception):
    """One sample that cannot be used; ``reason`` is a short stable key (it names the counter)."""

    def __init__(self, reason: str, file: object, detail: str = "") -> None:
        super().__init__(f"{file}: {reason}{': ' + detail if detail else ''}")
        self.reason, self.file, self.detail = reason, str(file), detail


@dataclass(frozen=True)
class Skipped:
    """What a dataset returns in place of a bad sample."""

    reason: str
    file: str
    detail: str = ""

    @classmethod
    def of(cls, exc: BadSample) -> Skipped:
        return cls(exc.reason, exc.file, exc.detail)


def collate_with_events(items: list, collate: Callable[[list[dict]], dict]) -> dict:
    """Collate the good items (``collate``) and attach every skip and note of this batch under ``EVENTS``."""
    good = [it for it in items if not isinstance(it, Skipped)]
    events = [(it.reason, it.file) for it in items if isinstance(it, Skipped)]
    for it in good:
        events += it.pop(EVENTS, [])
    batch = collate(good) if good else {}
    batch[EVENTS] = events
    return batch


def batch_size_of(batch: dict) -> int:
    """Samples in a batch: its images, plus (caption data with a feature cache) its cached token rows."""
    return sum(int(batch[k].shape[0]) for k in ("image", "tokens") if isinstance(batch.get(k), torch.Tensor))


class DataQualityError(ValueError):
    """Too many bad samples: the data, not the code, needs attention."""


class SkipCounter:
    """Counts seen samples and events by reason; raises when the skipped share is too high."""

    def __init__(self, max_bad_fraction: float, where: str = "data") -> None:
        self.max_bad_fraction, self.where = max_bad_fraction, where
        self.seen = 0
        self.shards = 0
        self.counts: Counter[str] = Counter()
        self.examples: dict[str, str] = {}
        self.by_source: Counter[str] = Counter()  # bad samples per file, or per shard for "shard:key" samples

    @property
    def skipped(self) -> int:
        return sum(n for r, n in self.counts.items() if r not in NOTE_REASONS | SHARD_REASONS)

    @property
    def failed_shards(self) -> int:
        return sum(n for r, n in self.counts.items() if r in SHARD_REASONS)

    def add(self, used: int, events: Iterable[tuple[str, str]], shards: int = 0) -> None:
        for reason, file in events:
            self.counts[reason] += 1
            if reason not in NOTE_REASONS | SHARD_REASONS:
                self.by_source[str(file).rpartition(":")[0] or str(file)] += 1
            if reason not in self.examples:
                self.examples[reason] = file
                verb = "repaired" if reason in NOTE_REASONS else "skipped"
                log.warning(
                    "%s: %s sample (%s): %s; later ones are counted, not logged",
                    self.where,
                    verb,
                    reason,
                    file,
                )
        self.seen += used + sum(1 for r, _ in events if r not in NOTE_REASONS | SHARD_REASONS)
        self.shards += shards
        if self.seen >= MIN_SEEN or self.shards >= MIN_SHARDS:
            self.check()

    def check(self) -> None:
        if self.shards and self.failed_shards / self.shards > self.max_bad_fraction:
            raise DataQualityError(
                f"{self.where}: {self.failed_shards} of {self.shards} shards could not be read "
                f"({self.summary()}), more than data.max_bad_fraction={self.max_bad_fraction}. First: "
                + "; ".join(f"{r}: {f}" for r, f in self.examples.items() if r in SHARD_REASONS)
                + ". Check the shard list (data.train.shards) and that every shard is a complete tar."
            )
        if self.seen and self.skipped / self.seen > self.max_bad_fraction:
            raise DataQualityError(
                f"{self.where}: {self.skipped} of {self.seen} samples were bad ({self.summary()}), more than "
                f"data.max_bad_fraction={self.max_bad_fraction}. Worst: "
                + "; ".join(f"{src} ({n} bad)" for src, n in self.by_source.most_common(5))
                + ". First of each kind: "
                + "; ".join(f"{r}: {f}" for r, f in self.examples.items())
                + ". Run `lseg-pacl data check` on the dataset, fix or remove these files, or raise the "
                  "limit."
            )

    def summary(self) -> str:
        return ", ".join(f"{r}={n}" for r, n in sorted(self.counts.items())) or "none"
