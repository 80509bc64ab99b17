"""What every ``data prepare`` converter shares: the summary it returns, and how it writes an output file.

An output is written atomically (a temporary file in the same folder, then ``os.replace``), so an interrupted
run leaves whole files only and a rerun resumes: an existing output with the same content is skipped and
counted. An existing output whose content differs is never replaced: it is counted and listed as a conflict.
A bad input (unreadable file, ids the conversion has no entry for) is counted and listed, never a traceback.
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)
MAX_LISTED = 1000  # conflicts and bad inputs listed in the summary (all of them are counted)
PROGRESS_EVERY = 1000  # inputs between progress lines in the log


class InputError(Exception):
    """A source that cannot be used at all (an index file that is unreadable or asks to run code)."""


@dataclass
class Summary:
    """Counts per output file: ``written``, ``skipped_same`` (already there, same content), ``conflicts``
    (already there, different content: left alone); ``bad_inputs`` per input sample."""

    dataset: str
    source: str
    out: str
    split: str
    inputs: int = 0
    written: int = 0
    skipped_same: int = 0
    conflicts: int = 0
    bad_inputs: int = 0
    conflict_files: list[str] = field(default_factory=list)
    bad: list[dict] = field(default_factory=list)

    def conflict(self, path: Path) -> None:
        self.conflicts += 1
        if len(self.conflict_files) < MAX_LISTED:
            self.conflict_files.append(str(path))

    def bad_input(self, file: Path | str, reason: str, detail: str = "") -> None:
        self.bad_inputs += 1
        if len(self.bad) < MAX_LISTED:
            self.bad.append({"file": str(file), "reason": reason, **({"detail": detail} if detail else {})})

    def seen(self) -> None:
        self.inputs += 1
        if self.inputs % PROGRESS_EVERY == 0:
            log.info("%s: %d inputs, %d written, %d skipped (same), %d conflicts, %d bad", self.dataset,
                     self.inputs, self.written, self.skipped_same, self.conflicts, self.bad_inputs)

    def as_dict(self) -> dict:
        return {
            "dataset": self.dataset,
            "source": self.source,
            "out": self.out,
            "split": self.split,
            "inputs": self.inputs,
            "written": self.written,
            "skipped_same": self.skipped_same,
            "conflicts": self.conflicts,
            "bad_inputs": self.bad_inputs,
            "conflict_files": self.conflict_files,
            "bad": self.bad,
        }


def encode(img: Image.Image, fmt: str) -> bytes:
    """The file PIL writes for ``img`` in ``fmt`` ("PNG", "TIFF", "JPEG"), with PIL's default settings."""
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def _pixels(source: Path | bytes) -> tuple[str, tuple[int, int], np.ndarray] | None:
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
            img.load()
            return img.mode, img.size, np.asarray(img)
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError):
        return None


def same_content(path: Path, data: bytes, decoded: bool = True) -> bool:
    """Whether the file at ``path`` holds ``data``: the same bytes, or (``decoded``) the same picture once
    decoded (mode, size and every pixel), whatever encoder wrote it."""
    try:
        if path.read_bytes() == data:
            return True
    except OSError:
        return False
    if not decoded:
        return False
    old, new = _pixels(path), _pixels(data)
    return old is not None and new is not None and old[:2] == new[:2] and np.array_equal(old[2], new[2])


def write_atomic(path: Path, data: bytes) -> None:
    """``data`` into ``path`` through a temporary file beside it: readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def put(summary: Summary, path: Path, data: bytes, decoded: bool = True) -> None:
    """Write one output unless it is already there: same content -> skipped; different -> a conflict, left as
    it is."""
    if path.exists():
        if same_content(path, data, decoded):
            summary.skipped_same += 1
        else:
            summary.conflict(path)
        return
    write_atomic(path, data)
    summary.written += 1


def put_image(summary: Summary, path: Path, img: Image.Image, fmt: str) -> None:
    put(summary, path, encode(img, fmt))


def standard_out(root: str | Path, folder: str) -> Path:
    """The output folder: ``root`` itself when it already ends with the dataset's standard folder (e.g.
    ``.../VOCdevkit/VOC2010``), else ``root/<folder>``."""
    root = Path(root).expanduser()
    parts = Path(folder).parts
    return root if root.parts[-len(parts):] == parts else root / folder


def source_dir(src: str | Path, folder: str) -> Path:
    """``src`` may be the dataset's own folder or a folder holding it under its standard name."""
    src = Path(src).expanduser()
    return src / folder if (src / folder).is_dir() else src
