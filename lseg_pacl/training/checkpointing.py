"""A run's checkpoints: written so that a crash at any moment leaves an intact one, verified before use.

Every save (ours and Lightning's ModelCheckpoint alike, through ``SafeCheckpointIO``) writes a temporary file
in the checkpoint's own directory, fsyncs it, renames it into place, fsyncs the directory, and only then
writes a small manifest beside it (``<name>.manifest.json``: step, size, sha256), also atomically. A
checkpoint counts only when its manifest matches its bytes, so a truncated, empty, altered or half-renamed
file is never loaded. A failed save (disk full, permissions) is an error (``CheckpointError``) and leaves the
previous files as they were.

``last.ckpt`` is always the newest state (written at each epoch boundary, validation end and preemption);
before it is replaced, the previous one is kept as ``last-step<N>.ckpt`` and only the newest ``keep_last`` of
those states are kept. Resume takes the newest verified checkpoint and says which newer ones it passed over.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from data_modules.ranks import rank
from lseg_pacl.checksums import sha256_of
from lseg_pacl.errors import CheckpointError
from lseg_pacl.models.weights import load_tensors

log = logging.getLogger(__name__)

LAST = "last.ckpt"
MANIFEST = ".manifest.json"
_PREVIOUS = re.compile(r"last-step(\d+)\.ckpt$")


# ------------------------------------------------------------------------------------------------ files


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class _HashingWriter:
    """A write-only file that hashes what passes through it (the manifest's checksum without reading back)."""

    def __init__(self, f: IO[bytes]) -> None:
        self.f, self.size, self.sha256 = f, 0, hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += len(data)
        return self.f.write(data)

    def flush(self) -> None:
        self.f.flush()


def write_atomic(path: Path, write: Callable[[IO[bytes]], None]) -> tuple[int, str]:
    """``write(file)`` into a temporary file beside ``path``, fsync, rename over ``path``, fsync the
    directory; returns the size and sha256 of what was written. On any failure the temporary file is removed
    and ``path`` is untouched."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            out = _HashingWriter(f)
            write(out)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return out.size, out.sha256.hexdigest()


def manifest_path(path: Path) -> Path:
    return Path(path).with_name(Path(path).name + MANIFEST)


def write_manifest(path: Path, step: int, size: int, sha256: str) -> None:
    entry = {"file": Path(path).name, "step": int(step), "size": int(size), "sha256": sha256}
    write_atomic(manifest_path(path), lambda f: f.write(json.dumps(entry).encode()))


def read_manifest(path: Path) -> dict | None:
    try:
        entry = json.loads(manifest_path(path).read_text())
        return entry if isinstance(entry, dict) and isinstance(entry.get("step"), int) else None
    except (OSError, ValueError):
        return None


def verify(path: Path) -> str | None:
    """None when ``path`` matches its manifest, else why not."""
    path = Path(path)
    entry = read_manifest(path)
    if entry is None:
        return "no readable manifest (the save did not finish)"
    if not path.is_file():
        return "file missing"
    try:
        if path.stat().st_size != entry.get("size"):
            return (
                f"size {path.stat().st_size} != {entry.get('size')} in its manifest (truncated or replaced)"
            )
        if sha256_of(path) != entry.get("sha256"):
            return "checksum differs from its manifest (altered or corrupted)"
    except OSError as exc:
        return f"unreadable ({exc})"
    return None


def _move(src: Path, dst: Path) -> None:
    """Move a checkpoint and its manifest (the manifest after the file: a crash between leaves it
    unverified)."""
    os.replace(src, dst)
    if manifest_path(src).exists():
        os.replace(manifest_path(src), manifest_path(dst))
    _fsync_dir(dst.parent)


def remove(path: Path) -> None:
    """Remove a checkpoint's manifest first (so that it stops counting), then the file."""
    manifest_path(path).unlink(missing_ok=True)
    Path(path).unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------------ Lightning


class SafeCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer and reader, made atomic and verified (see the module doc); tensors-only
    loading (``weights_only=True``) whatever the caller asks."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            size, sha256 = write_atomic(path, lambda f: torch.save(checkpoint, f))
            write_manifest(path, int(checkpoint.get("global_step", 0)), size, sha256)
        except OSError as exc:
            raise CheckpointError(
                f"could not write checkpoint {path}: {exc}. The checkpoints already in "
                f"{path.parent} are unchanged; free space or fix permissions and resume."
            ) from None

    def load_checkpoint(
        self, path: Any, map_location: Any | None = None, weights_only: bool | None = None
    ) -> dict:
        problem = verify(Path(path)) if read_manifest(Path(path)) is not None else None
        if problem:
            raise CheckpointError(f"refusing to load {path}: {problem}")
        try:
            return load_tensors(Path(path), map_location or "cpu")
        except Exception as exc:  # noqa: BLE001 - a pickle payload, a truncated file: never loaded
            raise CheckpointError(
                f"{path} cannot be read as a tensors-only checkpoint ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''})"
            ) from None

    def remove_checkpoint(self, path: Any) -> None:
        remove(Path(path))


def checkpoints_by_step(directory: Path) -> list[tuple[int, Path]]:
    """Every checkpoint in ``directory`` that has a manifest, newest step first (last.ckpt before a tie)."""
    found = []
    for path in Path(directory).glob("*.ckpt"):
        entry = read_manifest(path)
        if entry is not None:
            found.append((entry["step"], path.name == LAST, path))
    return [(step, path) for step, _, path in sorted(found, key=lambda t: (t[0], t[1]), reverse=True)]


def clear_unfinished_saves(directory: Path) -> None:
    """Remove the temporary files of saves that were killed before their rename (never loaded, only
    clutter)."""
    for stale in Path(directory).glob(".*.tmp"):
        stale.unlink(missing_ok=True)


def resume_checkpoint(directory: Path) -> Path | None:
    """The newest checkpoint whose manifest verifies; a warning for each newer one passed over."""
    for step, path in checkpoints_by_step(directory):
        problem = verify(path)
        if problem is None:
            return path
        log.warning("not resuming from %s (step %d): %s; trying the previous checkpoint", path, step, problem)
    return None


class SaveLast(Callback):
    """Write ``<dir>/last.ckpt`` at each epoch boundary and validation end during fit (the newest state); the
    state it replaces becomes ``last-step<N>.ckpt``, and only the newest ``keep_last`` states are kept."""

    def __init__(self, directory: Path, keep_last: int = 2) -> None:
        self.directory = Path(directory)
        self.path = self.directory / LAST
        self.keep_last = max(1, int(keep_last))

    def save(self, trainer: L.Trainer) -> None:
        """Save the current state (every rank calls this; rank 0 writes)."""
        if rank() == 0 and self.path.exists():
            entry = read_manifest(self.path)
            if entry is not None and entry["step"] == trainer.global_step:
                pass  # this very state is already last.ckpt: it is rewritten in place
            elif entry is not None:  # kept as the previous state (resume verifies it before any use)
                _move(self.path, self.directory / f"last-step{entry['step']}.ckpt")
        trainer.save_checkpoint(self.path)
        if rank() == 0:
            self._prune()

    def save_here(self, trainer: L.Trainer) -> None:
        """Save the current state from this process alone, with no collective (the stall stop: another rank
        may never join one); only rank 0 writes, as the ranks' states are equal between steps."""
        if rank() != 0:
            return
        if self.path.exists():
            entry = read_manifest(self.path)
            if entry is not None and entry["step"] != trainer.global_step:
                _move(self.path, self.directory / f"last-step{entry['step']}.ckpt")
        checkpoint = trainer._checkpoint_connector.dump_checkpoint(weights_only=False)
        trainer.strategy.checkpoint_io.save_checkpoint(checkpoint, self.path)
        self._prune()

    def _prune(self) -> None:
        previous = sorted(
            (
                (int(m.group(1)), p)
                for p in self.directory.glob("last-step*.ckpt")
                if (m := _PREVIOUS.search(p.name))
            ),
            reverse=True,
        )
        for _, path in previous[self.keep_last - 1 :]:
            remove(path)

    def _save(self, trainer: L.Trainer) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit" or trainer.global_step == 0:
            return
        self.save(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._save(trainer)

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int
    ) -> None:
        """The epoch boundary, saved before the next epoch's first step: the one point between epochs where
        Lightning's loop counters are consistent (at on_train_epoch_end it has already counted the epoch as
        processed, at the last batch's end the batch is not yet completed, at on_train_epoch_start the batch
        counters are the old epoch's; a run resumed from any of those would skip or repeat data)."""
        if batch_idx == 0:
            self._save(trainer)


def checkpoint_callbacks(directory: Path, keep_last: int = 2) -> list[Callback]:
    """last.ckpt (newest, with the previous states kept) and best-step<N>.ckpt (best val/mIoU so far)."""
    best = ModelCheckpoint(
        dirpath=directory,
        filename="best-step{step}",
        auto_insert_metric_name=False,
        monitor="val/mIoU",
        mode="max",
        save_top_k=1,
        save_last=False,
    )
    return [SaveLast(directory, keep_last), best]
