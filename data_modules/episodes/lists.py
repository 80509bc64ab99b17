"""The official episode lists: PASCAL-5i and FSS-1000 shipped with this package (class_lists/fewshot/,
SOURCE.md there), COCO-20i read from the user's copy of ``splits/coco`` with an unpickler that runs nothing.

Text lists are read as the official code reads them: text mode with universal newlines (so FSS's CRLF
``test.txt`` gives clean names), ``read().split('\\n')[:-1]`` (pascal.py:125-127, fss.py:22-24).
"""

from __future__ import annotations

import pickle
from pathlib import Path

__all__ = [
    "COCO_SOURCES",
    "ListUnpickler",
    "RefusedGlobal",
    "coco_classwise",
    "coco_list_path",
    "fss_categories",
    "label_names",
    "load_list_pickle",
    "pascal_list",
    "shipped_dir",
]

SHIPPED = Path(__file__).resolve().parent.parent / "class_lists" / "fewshot"
COCO_SOURCES = (
    "HSNet (github.com/juhongm999/hsnet, data/splits/coco/) or lang-seg (github.com/isl-org/lang-seg, "
    "fewshot_data/data/splits/coco/)"
)


def shipped_dir() -> Path:
    """The folder of the shipped lists (read at each call, so tests may point ``SHIPPED`` elsewhere)."""
    return SHIPPED


def _shipped(relative: str) -> Path:
    path = shipped_dir() / relative
    if not path.is_file():
        raise FileNotFoundError(
            f"the shipped episode list {path} is missing: reinstall lseg_pacl (it is package data, "
            f"data_modules/class_lists/fewshot/{relative})"
        )
    return path


def _official_lines(path: Path) -> list[str]:
    with open(path, encoding="utf-8") as f:  # text mode: universal newlines, as open(path, 'r') officially
        return f.read().split("\n")[:-1]


def label_names(file: str) -> list[str]:
    """A label file's names: every line stripped (lseg_module_zs.py:57-68 ``get_labels``)."""
    with open(_shipped(file), encoding="utf-8") as f:
        return [line.strip() for line in f.readlines()]


def pascal_list(split: str, fold: int) -> list[tuple[str, int]]:
    """``splits/pascal/<split>/fold<fold>.txt`` as (VOC image id, 0-based class) pairs (pascal.py:123-128);
    ``split``: "trn" or "val"."""
    if split not in ("trn", "val"):
        raise ValueError(f"PASCAL-5i lists are trn or val, got {split!r}")
    lines = _official_lines(_shipped(f"pascal/{split}/fold{fold}.txt"))
    return [(line.split("__")[0], int(line.split("__")[1]) - 1) for line in lines]


def fss_categories(split: str) -> list[str]:
    """The sorted class folder names of ``splits/fss/<split>.txt`` (fss.py:22-24); ``split``: trn, val,
    test."""
    if split not in ("trn", "val", "test"):
        raise ValueError(f"FSS-1000 lists are trn, val or test, got {split!r}")
    return sorted(_official_lines(_shipped(f"fss/{split}.txt")))


class RefusedGlobal(pickle.UnpicklingError):
    """The pickle asked for a callable (as data_modules/prepare/safe_pickle.py, with no global allowed)."""


class ListUnpickler(pickle.Unpickler):
    """Rebuilds dicts, lists, strings and numbers only: every global (any callable, any class) is refused
    before anything is imported or called; persistent ids are refused by ``pickle.Unpickler`` itself."""

    def __init__(self, file, where: str) -> None:
        super().__init__(file)
        self.where = where

    def find_class(self, module: str, name: str):
        raise RefusedGlobal(
            f"{self.where} asks to call {module}.{name}; refused: an episode list may hold a dict of lists "
            f"of strings only (a pickle from elsewhere must never run code)"
        )


def load_list_pickle(path: Path) -> object:
    with open(path, "rb") as f:
        return ListUnpickler(f, str(path)).load()


def coco_list_path(lists_dir: str | Path, split: str, fold: int) -> Path:
    """``<lists_dir>/<split>/fold<fold>.pkl``; ``split``: "trn" or "val" (coco.py:70-73)."""
    return Path(lists_dir).expanduser() / split / f"fold{fold}.pkl"


def coco_text_list(path: Path) -> dict[int, list[str]]:
    """A converted fold list: ``<class>\t<image>`` lines, the pickle's entries in its order."""
    out: dict[int, list[str]] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        cls, sep, name = line.partition("\t")
        if not sep or not cls.isdigit() or not name:
            raise ValueError(f"{path}:{number} is not '<class>\\t<image>': {line[:80]!r}")
        out.setdefault(int(cls), []).append(name)
    return out


def coco_classwise(lists_dir: str | Path, split: str, fold: int) -> dict[int, list[str]]:
    """The official ``img_metadata_classwise`` of COCO-20i: {0-based class: ["val2014/COCO_val2014_...jpg",
    ...]} for all 80 classes (the classes outside the split hold empty lists)."""
    if split not in ("trn", "val"):
        raise ValueError(f"COCO-20i lists are trn or val, got {split!r}")
    text = Path(lists_dir).expanduser() / split / f"fold{fold}.txt"
    if text.is_file():  # what `lseg-pacl data prepare coco20i splits=DIR` writes from the pickle
        return coco_text_list(text)
    path = coco_list_path(lists_dir, split, fold)
    if not path.is_file():
        raise FileNotFoundError(
            f"COCO-20i needs its episode list {path}: copy splits/coco/{split}/fold{fold}.pkl from "
            f"{COCO_SOURCES} "
            f"to {path}, or pass coco_lists=DIR of a folder holding {{trn,val}}/fold{{0..3}}.pkl"
        )
    try:
        data = load_list_pickle(path)
    except RefusedGlobal:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError) as exc:
        raise ValueError(f"{path} is not a readable COCO-20i list ({exc})") from None
    if not (isinstance(data, dict) and all(isinstance(k, int) and not isinstance(k, bool) for k in data)):
        raise ValueError(f"{path} must hold a dict {{class id: [image, ...]}} with int keys")
    out: dict[int, list[str]] = {}
    for k, v in data.items():
        if not (isinstance(v, list) and all(isinstance(s, str) for s in v)):
            raise ValueError(f"{path}: class {k} must map to a list of image names (strings)")
        out[k] = v
    return out
