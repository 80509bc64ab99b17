"""Which classes each fold of the LSeg zero-shot benchmarks holds, and the class names (lang-seg @ bb00b21).

Class ids are 0-based and benchmark-wide (the id the official ``batch['class_id']`` carries):

* ``pascal5i``: 20 VOC classes, 4 folds of 5 contiguous ids, fold i = {5i .. 5i+4}
  (fewshot_data/data/pascal.py:111-119 ``build_class_ids``).
* ``coco20i``: 80 COCO classes, 4 interleaved folds, fold i = {i, i+4, ..., i+76}
  (fewshot_data/data/coco.py:62-68).
* ``fss1000``: 1000 classes, one fold: trn 0..519, val 520..759, test 760..999; within a split the id is
  the index in the sorted names of ``splits/fss/<split>.txt`` (fss.py:22-24, 89-95, 118-125).
* ``synthetic``: the embedded world's 10 classes in mask-id order (``CLASS_NAMES``), 5 interleaved folds,
  fold f = {f, f+5}.

``split``: "train" (the other folds' classes, the seen ones; "trn" accepted) or "test" (the fold's classes;
"val" is the same, as pascal.py:13 and coco.py:14 read it), except for ``fss1000`` whose "val" is its own
240 validation classes (fss.py:121-124). The official short names ``pascal``, ``coco``, ``fss`` are accepted.
"""

from __future__ import annotations

from dataclasses import dataclass

from data_modules.episodes import lists
from data_modules.synthetic import CLASS_NAMES

__all__ = [
    "BENCHMARKS",
    "EPISODE_BENCHMARKS",
    "Spec",
    "canonical",
    "class_names",
    "fold_classes",
    "fold_count",
    "normalise_split",
    "spec",
]


@dataclass(frozen=True)
class Spec:
    name: str
    nclass: int
    nfolds: int
    names_file: str | None  # the official label file (label_files/fewshot_*.txt), None for synthetic


BENCHMARKS: dict[str, Spec] = {
    s.name: s
    for s in (
        Spec("pascal5i", 20, 4, "fewshot_pascal.txt"),
        Spec("coco20i", 80, 4, "fewshot_coco.txt"),
        Spec("fss1000", 1000, 1, "fewshot_fss.txt"),
        Spec("synthetic", len(CLASS_NAMES), 5, None),
    )
}
EPISODE_BENCHMARKS: tuple[str, ...] = tuple(BENCHMARKS)
ALIASES = {"pascal": "pascal5i", "coco": "coco20i", "fss": "fss1000"}  # test_lseg_zs.py --dataset names
FSS_SPLITS = {"train": (0, 520), "val": (520, 760), "test": (760, 1000)}  # fss.py:118-125 (first, end)


def canonical(benchmark: str) -> str:
    name = ALIASES.get(benchmark, benchmark)
    if name not in BENCHMARKS:
        raise ValueError(f"unknown episode benchmark '{benchmark}'; known: {', '.join(BENCHMARKS)}")
    return name


def spec(benchmark: str) -> Spec:
    return BENCHMARKS[canonical(benchmark)]


def fold_count(benchmark: str) -> int:
    """How many folds ``benchmark`` has (4, 4, 1, 5)."""
    return spec(benchmark).nfolds


def normalise_split(benchmark: str, split: str) -> str:
    """ "train" | "test", or "val" for fss1000 (its validation classes)."""
    name = canonical(benchmark)
    if split in ("train", "trn"):
        return "train"
    if split == "test" or (split == "val" and name != "fss1000"):
        return "test"
    if split == "val":
        return "val"
    raise ValueError(
        f"unknown split '{split}' for {name}: use train or test" + (" or val" * (name == "fss1000"))
    )


def _check_fold(s: Spec, fold: int) -> None:
    if not (isinstance(fold, int) and 0 <= fold < s.nfolds):
        raise ValueError(f"{s.name} has folds 0..{s.nfolds - 1}, got {fold!r}")


def fold_classes(benchmark: str, fold: int, split: str) -> list[int]:
    """The 0-based class ids of ``fold`` for ``split`` ("train": the seen classes, "test": the fold's own), in
    the official order (the order ``np.random.choice`` draws COCO classes from)."""
    s = spec(benchmark)
    _check_fold(s, fold)
    which = normalise_split(s.name, split)
    if s.name == "fss1000":
        first, end = FSS_SPLITS[which]
        return list(range(first, end))
    per_fold = s.nclass // s.nfolds
    if s.name == "pascal5i":  # pascal.py:112-114: contiguous blocks
        held_out = [fold * per_fold + i for i in range(per_fold)]
    else:  # coco.py:64-65 (and the synthetic world): interleaved
        held_out = [fold + s.nfolds * v for v in range(per_fold)]
    if which == "test":
        return held_out
    return [c for c in range(s.nclass) if c not in held_out]


def class_names(benchmark: str) -> list[str]:
    """Every class name, index = class id: the official label file's lines stripped, as lang-seg's
    ``get_labels`` reads them (modules/lseg_module_zs.py:57-68); the world's names for synthetic."""
    s = spec(benchmark)
    if s.names_file is None:
        return list(CLASS_NAMES)
    names = lists.label_names(s.names_file)
    if len(names) != s.nclass:
        raise ValueError(
            f"{lists.shipped_dir() / s.names_file} holds {len(names)} names, expected {s.nclass}"
        )
    return names
