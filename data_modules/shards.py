"""Image-caption pairs streamed from webdataset tar shards, in the layout img2dataset writes.

Each shard (``00000.tar``...) holds consecutive members ``KEY.jpg``, ``KEY.txt`` (the caption) and
``KEY.json``; only image and caption members are read (never pickles, never ``pipe:`` shell commands). Shards
are given as brace patterns (``/data/cc3m/{00000..00331}.tar``), lists, local paths or URLs (anything fsspec
opens).

Every epoch has a fixed number of batches per rank (a stream that runs dry stops the run, never a rank alone),
so DDP ranks stay in step and the LR schedule knows its length. The stream of one (rank, DataLoader worker) is
a pure function of (seed, epoch, rank, worker):

* without resampling, the shard list is shuffled by (seed, epoch, pass) identically everywhere, then split by
  rank and by worker (no shard read twice in a pass, none left out); a worker that needs more samples than its
  shards hold starts its next pass on its own (so an epoch reads every sample exactly once only when the
  shards divide evenly among the workers and the epoch is their size);
* with resampling, each worker draws shards with replacement.

Several sources are mixed by weight, per sample. Bad samples and shards are counted (bad_samples.py).
"""

from __future__ import annotations

import itertools
import random
import tarfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from braceexpand import braceexpand
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from data_modules.bad_samples import EVENTS, EXHAUSTED, SHARDS, BadSample
from data_modules.images import Reduction, read_rgb
from data_modules.nouns import extract_nouns
from data_modules.ranks import distributed, place
from data_modules.workers import worker_options

STREAM = "data_stream"  # batch key: (worker, raw samples it read for this batch), for the stream's position
IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")
CAPTION_EXT = "txt"
WANTED = frozenset((*IMAGE_EXTS, CAPTION_EXT))


def expand_urls(patterns: Sequence[str]) -> list[str]:
    """Brace patterns and lists to a flat list of shard URLs (``pipe:`` refused: it runs a shell)."""
    urls: list[str] = []
    for pattern in patterns:
        if str(pattern).startswith("pipe:"):
            raise ValueError(
                f"shard URL '{pattern}': pipe: commands are not supported (they run a shell); "
                f"mount or download the shards, or give an http(s)/s3/gs URL"
            )
        urls += list(braceexpand(str(pattern)))
    return urls


def is_local(url: str) -> bool:
    return "://" not in url or url.startswith("file://")


def local_path(url: str) -> Path:
    return Path(url[len("file://") :] if url.startswith("file://") else url).expanduser()


def open_shard(url: str) -> BinaryIO:
    if is_local(url):
        return open(local_path(url), "rb")  # noqa: SIM115 (closed by the caller)
    import fsspec

    return fsspec.open(url, "rb").open()


def split_key(name: str) -> tuple[str, str]:
    """webdataset's convention: the key is the path up to the first dot of the file name; the rest,
    lowercased, is the extension."""
    folder, _, base = name.rpartition("/")
    stem, _, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), ext.lower()


def read_shard(url: str, events: list[tuple[str, str]]) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {extension: bytes}) per sample of one shard; a shard that cannot be opened or read to its end
    becomes an event (any failure: file systems and network clients raise many kinds of exception)."""
    try:
        stream = open_shard(url)
    except Exception as exc:  # noqa: BLE001
        events.append(("missing_shard", url if isinstance(exc, FileNotFoundError) else f"{url} ({exc})"))
        return
    key, members = None, {}
    try:
        with stream, tarfile.open(fileobj=stream, mode="r|*") as tar:
            for info in tar:
                if not info.isfile():
                    continue
                name = info.name.removeprefix("./")
                if (
                    "/" in name or "\\" in name or name.startswith("..")
                ):  # never a path: "../x", "a/b", "C:\\x"
                    events.append(("bad_key", f"{url}:{info.name!r}"))
                    continue
                k, ext = split_key(name)
                if k != key:
                    if key is not None:
                        yield key, members
                    key, members = k, {}
                if ext in WANTED:
                    members[ext] = tar.extractfile(info).read()
        if key is not None:
            yield key, members
    except Exception as exc:  # noqa: BLE001
        events.append(("bad_shard", f"{url} ({exc})"))


def parse_sample(
    url: str, key: str, members: dict[str, bytes], reduction: Reduction | None = None
) -> tuple[np.ndarray, str]:
    """(RGB pixels, caption) of one sample, or ``BadSample`` (missing member, undecodable image, empty or
    non-UTF-8 caption); ``reduction`` lets a large JPEG decode at a reduced size (images.py)."""
    where = f"{url}:{key}"
    image_bytes = next((members[e] for e in IMAGE_EXTS if e in members), None)
    if image_bytes is None:
        raise BadSample("missing_image", where)
    if CAPTION_EXT not in members:
        raise BadSample("missing_caption", where)
    try:
        caption = members[CAPTION_EXT].decode("utf-8").strip()
    except UnicodeDecodeError:
        raise BadSample("caption_not_utf8", where) from None
    if not caption:
        raise BadSample("empty_caption", where)
    return read_rgb(image_bytes, where, reduction), caption


def decode_sample(url: str, key: str, members: dict[str, bytes], transform: Callable, aug_seed: int) -> dict:
    """One training sample (augmented with ``aug_seed``), or ``BadSample``."""
    image, caption = parse_sample(url, key, members, getattr(transform, "max_decode_reduction", None))
    transform.set_random_seed(aug_seed)
    return {
        "image": transform(image=image)["image"],
        "caption": caption,
        "nouns": extract_nouns(caption),
        "key": key,
    }


@dataclass(frozen=True)
class ShardSource:
    urls: tuple[str, ...]
    weight: float = 1.0


def worker_shards(
    urls: Sequence[str],
    seed: int,
    epoch: int,
    pass_index: int,
    rank: int,
    world_size: int,
    worker: int,
    num_workers: int,
) -> list[str]:
    """This (rank, worker)'s shards for one pass: one shared shuffle, then a split by rank, then by worker."""
    order = list(urls)
    random.Random(f"shards-{seed}-{epoch}-{pass_index}").shuffle(order)
    return order[rank::world_size][worker::num_workers]


class ShardStream(IterableDataset):
    """Yields whole collated batches (DataLoader(batch_size=None)), ``len(self)`` of them per rank per
    epoch."""

    def __init__(
        self,
        sources: Sequence[ShardSource],
        transform: Callable,
        batch_size: int,
        samples_per_epoch: int,
        num_workers: int,
        seed: int = 0,
        resampled: bool = True,
        shuffle_buffer: int = 1000,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        super().__init__()
        if not sources:
            raise ValueError("no shard source given")
        self.sources = list(sources)
        self.transform, self.batch_size, self.seed = transform, batch_size, seed
        self.num_workers = max(1, num_workers)
        self.resampled, self.shuffle_buffer = resampled, shuffle_buffer
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.resume: StreamPosition | None = None  # where this epoch's stream restarts (resume_at)
        streams = world_size * self.num_workers
        self.batches_per_rank = samples_per_epoch // (batch_size * world_size)
        if self.batches_per_rank < self.num_workers:
            raise ValueError(
                f"samples_per_epoch={samples_per_epoch} gives {self.batches_per_rank} batches of "
                f"{batch_size} per rank, fewer than the {self.num_workers} DataLoader workers"
            )
        for src in self.sources:
            if not resampled and len(src.urls) < streams:
                raise ValueError(
                    f"{len(src.urls)} shards (first: {src.urls[0]}) cannot feed {world_size} ranks x "
                    f"{self.num_workers} workers without resampling: use more shards, fewer "
                    f"workers, or resampled mode"
                )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if self.resume is not None and self.resume.epoch != epoch:
            self.resume = None

    def resume_at(self, position: StreamPosition) -> None:
        """Continue ``position.epoch`` after what it had consumed: each worker passes over its consumed raw
        samples without decoding them (their random draws included), and the workers take their turns from
        the one whose batch comes next, so the batches that follow are those of an uninterrupted run."""
        self.resume = position if position.batches and sum(position.batches) else None

    def __len__(self) -> int:
        return self.batches_per_rank

    def worker_batches(self, worker: int) -> int:
        n, w = self.batches_per_rank, self.num_workers
        return n // w + (1 if worker < n % w else 0)

    def _rng(self, worker: int, tag: str) -> random.Random:
        return random.Random(f"{tag}-{self.seed}-{self.epoch}-{self.rank}-{worker}")

    def _source_samples(
        self, index: int, worker: int, events: list, opened: list
    ) -> Iterator[tuple[str, str, dict]]:
        """One source's samples for this worker, shuffled within each pass over its shards (a pass ends before
        the next begins). Ends when the source yields nothing: a whole pass, or (resampled) as many draws in a
        row as it has shards, at least 16."""
        urls = self.sources[index].urls
        rng = self._rng(worker, f"shuffle{index}")
        if self.resampled:
            draw = self._rng(worker, f"resample{index}")
            shards = iter(lambda: draw.choice(urls), None)
            yield from self._shuffled(self._read(shards, events, opened, give_up=max(16, len(urls))), rng)
            return
        pass_index = 0
        while True:
            produced = False
            mine = worker_shards(
                urls, self.seed, self.epoch, pass_index, self.rank, self.world_size, worker, self.num_workers
            )
            for sample in self._shuffled(self._read(mine, events, opened), rng):
                produced = True
                yield sample
            if not produced:
                return
            pass_index += 1

    @staticmethod
    def _read(
        urls: Iterable[str], events: list, opened: list, give_up: int = 0
    ) -> Iterator[tuple[str, str, dict]]:
        """Samples of the shards in turn; counts shards in ``opened[0]``; with ``give_up``, stops after that
        many shards in a row gave nothing."""
        empty = 0
        for url in urls:
            opened[0] += 1
            got = False
            for key, members in read_shard(url, events):
                got = True
                yield url, key, members
            empty = 0 if got else empty + 1
            if give_up and empty >= give_up:
                return

    def _mixed(self, worker: int, events: list, opened: list) -> Iterator[tuple[str, str, dict]]:
        streams = [self._source_samples(i, worker, events, opened) for i in range(len(self.sources))]
        weights = [s.weight for s in self.sources]
        rng = self._rng(worker, "mix")
        alive = list(range(len(streams)))
        while alive:
            i = rng.choices(alive, weights=[weights[j] for j in alive])[0] if len(alive) > 1 else alive[0]
            try:
                yield next(streams[i])
            except StopIteration:
                alive.remove(i)

    def _shuffled(self, samples: Iterator, rng: random.Random) -> Iterator:
        if self.shuffle_buffer <= 1:
            yield from samples
            return
        buffer: list = []
        for sample in samples:
            buffer.append(sample)
            if len(buffer) >= self.shuffle_buffer:
                j = rng.randrange(len(buffer))
                buffer[j], buffer[-1] = buffer[-1], buffer[j]
                yield buffer.pop()
        rng.shuffle(buffer)
        yield from buffer

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        physical = info.id if info is not None else 0
        if info is not None and info.num_workers != self.num_workers:
            raise RuntimeError(
                f"ShardStream was built for {self.num_workers} workers, runs in {info.num_workers}"
            )
        resume = self.resume if self.resume is not None and self.resume.epoch == self.epoch else None
        # DataLoader asks its workers in turn from worker 0: after k batches the next one is worker k % W's
        worker = (physical + (sum(resume.batches) if resume else 0)) % self.num_workers
        events: list[tuple[str, str]] = []
        opened = [0]  # shards opened since the last batch
        rng = self._rng(worker, "augment")
        samples = self._mixed(worker, events, opened)
        skip = resume.raw[worker] if resume else 0
        for _ in itertools.islice(samples, skip):  # read, not decoded
            rng.getrandbits(31)
        events.clear()
        for done in range(resume.batches[worker] if resume else 0, self.worker_batches(worker)):
            items, raw = [], 0
            for url, key, members in samples:
                raw += 1
                try:
                    items.append(decode_sample(url, key, members, self.transform, rng.getrandbits(31)))
                except BadSample as exc:
                    events.append((exc.reason, exc.file))
                if len(items) == self.batch_size:
                    break
            if (
                len(items) < self.batch_size
            ):  # every source ran dry: SkipMonitor stops the run with this message
                yield {
                    EVENTS: list(events),
                    SHARDS: opened[0],
                    EXHAUSTED: f"caption shards ran dry in worker {worker} of rank {self.rank} after {done} "
                               f"of {self.worker_batches(worker)} batches: no source yields samples any more",
                }
                return
            yield {
                "image": torch.stack([it["image"] for it in items]),
                "caption": [it["caption"] for it in items],
                "nouns": [it["nouns"] for it in items],
                "key": [it["key"] for it in items],
                EVENTS: list(events),
                SHARDS: opened[0],
                STREAM: (worker, raw),
            }
            events.clear()  # the sample generators hold this list: empty it, never rebind it
            opened[0] = 0


@dataclass
class StreamPosition:
    """How far a rank's shard stream got in ``epoch``: raw samples (good or bad) and batches per worker."""

    epoch: int
    raw: list[int]
    batches: list[int]

    def after(self, batch: dict) -> StreamPosition:
        worker, raw = batch[STREAM]
        position = StreamPosition(self.epoch, list(self.raw), list(self.batches))
        position.raw[worker] += raw
        position.batches[worker] += 1
        return position


class ResumableShardLoader(DataLoader):
    """The DataLoader of a ``ShardStream`` (whole batches, fresh workers each epoch), whose position within
    the epoch is saved in checkpoints and restored (the stream then continues exactly; see ``resume_at``).
    ``position`` is kept by the Trainer's callbacks (lseg_pacl/training/data_hooks.py)."""

    def __init__(self, stream: ShardStream, num_workers: int) -> None:
        super().__init__(stream, batch_size=None, num_workers=num_workers, persistent_workers=False,
                         **worker_options(num_workers))
        self.begin_epoch(stream.epoch)

    def begin_epoch(self, epoch: int) -> None:
        self.position = StreamPosition(epoch, [0] * self.dataset.num_workers, [0] * self.dataset.num_workers)

    def trained(self, batch: dict) -> None:
        if STREAM in batch:
            self.position = self.position.after(batch)

    def state_dict(self) -> dict:
        """Every rank's position (ranks read different shards, so their raw counts differ); each rank calls
        this when a checkpoint is made, and rank 0's copy, holding all of them, is the one written."""
        mine = {"epoch": self.position.epoch, "raw": self.position.raw, "batches": self.position.batches}
        ranks = [mine]
        if distributed():
            ranks = [None] * place()[1]
            torch.distributed.all_gather_object(ranks, mine)
        return {"ranks": ranks}

    def load_state_dict(self, state: dict) -> None:
        ranks = state.get("ranks", [])
        if len(ranks) != self.dataset.world_size:
            raise ValueError(
                f"the checkpoint's shard stream ran on {len(ranks)} processes, this run on "
                f"{self.dataset.world_size}: its position in the epoch cannot be restored"
            )
        state = ranks[self.dataset.rank]
        if len(state.get("raw", [])) != self.dataset.num_workers:
            raise ValueError(
                f"the checkpoint's shard stream had {len(state.get('raw', []))} workers per rank, this "
                f"run has {self.dataset.num_workers}: its position in the epoch cannot be restored"
            )
        self.position = StreamPosition(int(state["epoch"]), list(state["raw"]), list(state["batches"]))
        self.dataset.resume_at(self.position)
