"""Class-name sets of the official training-free repositories, shipped as data (class_lists/names/<set>/).

Each file is the repository's ``configs/cls_<dataset>.txt`` byte for byte (CLIPtrase's: written out from
its Python lists), renamed after this project's benchmark: one line per class in the benchmark's order,
synonyms on one line, and on VOC-21 / COCO-Object a first line that stands for background. ``default`` is
no file: the benchmark's own MMSegmentation list.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from data_modules.classnames import LISTS

NAMES_DIR = LISTS / "names"


@dataclass(frozen=True)
class NameSet:
    name: str
    separator: str  # how the official code splits a line into synonyms
    source: str  # repository@commit and folder the files come from


NAME_SETS: dict[str, NameSet | None] = {
    "default": None,
    # SCLIP clip_segmentor.py:201-212 splits on ', '; NACLIP 0cac3a6 ships the same eight files (same bytes)
    "sclip": NameSet("sclip", ", ", "wangf3014/SCLIP@b56bd30 configs/cls_*.txt (= sinahmr/NACLIP@0cac3a6)"),
    # ClearCLIP clearclip_segmentor.py:281-292 splits on ','
    "clearclip": NameSet("clearclip", ",", "mc-lan/ClearCLIP@ad68a40 configs/cls_*.txt"),
    # ProxyCLIP proxyclip_segmentor.py:336 splits on '; ' (so ADE-847's "building, edifice" stays one name)
    "proxyclip": NameSet("proxyclip", "; ", "mc-lan/ProxyCLIP@e7b767f configs/cls_*.txt"),
    # CLIPtrase keeps its names in configs/dataset_cfg.py: written out from there (names/cliptrase/SOURCE.md)
    "cliptrase": NameSet("cliptrase", ", ", "leaves162/CLIPtrase@2b7de61 configs/dataset_cfg.py"),
    # LSeg's ADE-150 label strings, cut at the first ';' as lang-seg's get_labels does (names/lseg/SOURCE.md):
    # what its checkpoints were trained on; one name per line (none holds ', ')
    "lseg": NameSet("lseg", ", ", "isl-org/lang-seg@bb00b21 label_files/ade20k_objectInfo150.txt"),
}


def name_file(set_name: str, benchmark: str) -> Path | None:
    """The set's file for a benchmark; None for ``default`` or a benchmark the set has no file for."""
    if set_name not in NAME_SETS:
        raise ValueError(f"unknown class-name set '{set_name}'; known: {', '.join(NAME_SETS)}")
    if NAME_SETS[set_name] is None:
        return None
    path = NAMES_DIR / set_name / f"{benchmark}.txt"
    return path if path.is_file() else None
