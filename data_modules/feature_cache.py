"""Frozen-encoder outputs kept on disk, so that epochs after the first read features instead of decoding
images and running the frozen CLIP.

``TokenStore``: the patch tokens of every sample of a map-style dataset, float16, in one memory-mapped file
[N, T, width] with one "filled" byte per sample. ``KeyedStore``: features of evaluation windows (any number,
any size), one file each, named by the digest of the input they were computed from, in the dtype computed (a
read equals a recomputation bit for bit). A sample's row is written once (by the training process that
computed it) and read by the DataLoader workers from then on; each row is valid on its own, so a first epoch
cut short (or split over DDP ranks) leaves a usable partial cache. ``TextStore``: text embeddings by string.

Each store lives in a folder named after a digest of everything that determines its contents (the encoder's
weights, the last block, the transform, the data's files); the folder's meta.json lists those inputs. A folder
is created under a temporary name and renamed into place, so concurrent processes agree on one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


def digest(obj: object) -> str:
    """A short, stable name for a JSON-able description."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:20]


def files_digest(files: Iterable[Path]) -> str:
    """Names, sizes and modification times of a dataset's files: a replaced image changes the key."""
    h = hashlib.blake2b(digest_size=16)
    for f in files:
        try:
            st = os.stat(f)
            h.update(f"{f}:{st.st_size}:{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{f}:missing\n".encode())
    return h.hexdigest()


def _claim_folder(root: Path, key: dict, make: callable) -> Path:
    """``root/<digest(key)>``, created by ``make(tmp_folder)`` under a temporary name when it does not
    exist."""
    folder = root / digest(key)
    if (folder / "meta.json").is_file():
        return folder
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".creating-", dir=root))
    tmp.chmod(0o755)  # mkdtemp makes it private; the cache is as shared as its root
    try:
        make(tmp)
        (tmp / "meta.json").write_text(json.dumps({"version": FORMAT_VERSION, **key}, indent=2, default=str))
        try:
            tmp.rename(folder)
        except OSError:  # another process created it first: use theirs
            if not (folder / "meta.json").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


class KeyedStore:
    """Features by the digest of their input, in ``<root>/<digest(key)>/<input digest>.npy``: written once,
    atomically (a file that exists is complete), read without pickles."""

    def __init__(self, root: str | Path, key: dict) -> None:
        self.folder = _claim_folder(Path(root), {"kind": "keyed_features", **key}, lambda folder: None)

    @staticmethod
    def name_of(inputs: torch.Tensor) -> str:
        """The digest of a tensor's shape, dtype and values."""
        data = inputs.detach().to("cpu").contiguous()
        h = hashlib.blake2b(digest_size=20)
        h.update(f"{tuple(data.shape)}:{data.dtype}".encode())
        h.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
        return h.hexdigest()

    def get(self, name: str) -> torch.Tensor | None:
        file = self.folder / f"{name}.npy"
        if not file.is_file():
            return None
        return torch.from_numpy(np.load(file, allow_pickle=False))

    def put(self, name: str, features: torch.Tensor) -> None:
        """Store ``features`` (bfloat16 as float32: numpy has no bfloat16; the reader casts back)."""
        features = features.float() if features.dtype == torch.bfloat16 else features
        data = features.detach().to("cpu").contiguous().numpy()
        fd, tmp = tempfile.mkstemp(prefix=".writing-", suffix=".npy", dir=self.folder)
        try:
            with os.fdopen(fd, "wb") as f:
                np.save(f, data, allow_pickle=False)
            os.replace(tmp, self.folder / f"{name}.npy")
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


class TokenStore:
    """Per-sample float16 patch tokens [n, tokens, width] in ``<root>/<digest(key)>/``."""

    def __init__(self, root: str | Path, key: dict, n: int, tokens: int, width: int) -> None:
        self.shape = (int(n), int(tokens), int(width))
        full_key = {"kind": "patch_tokens", "shape": list(self.shape), "dtype": "float16", **key}

        def make(folder: Path) -> None:
            with open(folder / "tokens.f16", "wb") as f:  # sparse: only written rows take space
                f.truncate(int(np.prod(self.shape)) * 2)
            with open(folder / "filled.u8", "wb") as f:
                f.truncate(self.shape[0])

        self.folder = _claim_folder(Path(root), full_key, make)
        self._tokens: np.memmap | None = None
        self._filled: np.memmap | None = None

    def __getstate__(self) -> dict:  # DataLoader workers open their own mappings
        return {**self.__dict__, "_tokens": None, "_filled": None}

    def _open(self) -> None:
        if self._tokens is None:
            self._tokens = np.memmap(self.folder / "tokens.f16", np.float16, "r+", shape=self.shape)
            self._filled = np.memmap(self.folder / "filled.u8", np.uint8, "r+", shape=(self.shape[0],))

    def has(self, index: int) -> bool:
        self._open()
        return bool(self._filled[index])

    def filled(self) -> int:
        self._open()
        return int(np.count_nonzero(self._filled))

    def read(self, index: int) -> torch.Tensor:
        self._open()
        return torch.from_numpy(np.array(self._tokens[index]))

    def write(self, indices: Sequence[int], tokens: torch.Tensor) -> int:
        """Store float16 ``tokens`` [k, T, width] for these samples; rows that are not finite in float16 stay
        uncached. Returns how many rows were stored. The row is written before its flag, so a reader never
        sees a flag without its row."""
        self._open()
        if tuple(tokens.shape[1:]) != self.shape[1:]:
            raise ValueError(f"tokens of shape {tuple(tokens.shape)} do not fit this cache {self.shape}")
        rows = tokens.detach().to("cpu", torch.float16).numpy()
        ok = np.isfinite(rows).all(axis=(1, 2))
        where = np.asarray(list(indices), dtype=np.int64)[ok]
        self._tokens[where] = rows[ok]
        self._filled[where] = 1
        return int(ok.sum())

    def flush(self) -> None:
        if self._tokens is not None:
            self._tokens.flush()
            self._filled.flush()


class TextStore:
    """Float16 text embeddings by string, for one text encoder; ``save`` writes them to
    ``<root>/<digest(key)>/texts.pt`` (tensors and strings only: read back with weights_only). New rows are
    kept in chunks and joined once when read, so filling it with hundreds of thousands of captions stays
    linear."""

    def __init__(self, root: str | Path, key: dict) -> None:
        self.folder = _claim_folder(
            Path(root), {"kind": "text_embeddings", "dtype": "float16", **key}, lambda folder: None
        )
        self.file = self.folder / "texts.pt"
        self._rows: dict[str, int] = {}
        self._chunks: list[torch.Tensor] = []
        self._saved = 0
        if self.file.is_file():
            try:
                saved = torch.load(self.file, map_location="cpu", weights_only=True)
                texts, table = list(saved["texts"]), saved["embeddings"]
                if not isinstance(table, torch.Tensor) or table.shape[0] != len(texts):
                    raise ValueError("texts and embeddings differ in number")
                self._rows = {t: k for k, t in enumerate(texts)}
                self._chunks = [table.to(torch.float16)]
                self._saved = len(self._rows)
            except Exception as exc:  # a damaged cache is rebuilt, never trusted
                self._rows, self._chunks = {}, []
                log.warning("text cache %s unreadable (%s): recomputing it", self.file, type(exc).__name__)

    def __len__(self) -> int:
        return len(self._rows)

    def missing(self, texts: Iterable[str]) -> list[str]:
        """The distinct texts not yet stored, in first-seen order."""
        return [t for t in dict.fromkeys(texts) if t not in self._rows]

    def add(self, texts: Sequence[str], embeddings: torch.Tensor) -> None:
        if len(texts) != embeddings.shape[0]:
            raise ValueError(f"{len(texts)} texts but {embeddings.shape[0]} embeddings")
        new: dict[str, int] = {}  # text -> its first row in this call
        for k, t in enumerate(texts):
            if t not in self._rows and t not in new:
                new[t] = k
        if not new:
            return
        self._chunks.append(embeddings.detach().to("cpu", torch.float16)[list(new.values())])
        for t in new:
            self._rows[t] = len(self._rows)

    def _table(self) -> torch.Tensor:
        if len(self._chunks) > 1:
            self._chunks = [torch.cat(self._chunks)]
        return self._chunks[0] if self._chunks else torch.zeros(0, 0, dtype=torch.float16)

    def get(self, texts: Sequence[str]) -> torch.Tensor:
        """[len(texts), D] float16; every text must be stored (``missing`` says which are not)."""
        return self._table()[[self._rows[t] for t in texts]]

    def save(self) -> None:
        """Write the store when it grew (atomically: a temporary file renamed into place)."""
        if len(self._rows) == self._saved:
            return
        texts = sorted(self._rows, key=self._rows.get)
        tmp = self.file.with_name(f".texts.{os.getpid()}.tmp")
        torch.save({"texts": texts, "embeddings": self._table()}, tmp)
        tmp.replace(self.file)
        self._saved = len(texts)


@dataclass(frozen=True)
class FeatureStores:
    """What one training run's data and model share: the data reads stored patch tokens instead of images, the
    model writes the tokens it computes and reads text embeddings. Opened once by the run and handed to
    both."""

    token_store: TokenStore | None
    text_store: TextStore | None
    records: tuple = ()  # the caption records the token store's rows index, in order (read once, for both)
    captions: tuple[str, ...] = ()  # every caption and noun the training set can produce: what the text store
    nouns: tuple[str, ...] = ()  # is filled with before the first step
