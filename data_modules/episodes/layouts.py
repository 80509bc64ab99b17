"""Where each episode benchmark's files lie: HSNet's layout under a data root (``--datapath`` of
test_lseg_zs.py; fewshot_data/data/{pascal,coco,fss}.py), the embedded world's ADE20K layout for synthetic
(data_modules/benchmarks.py, "synthetic")."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from data_modules.benchmarks import benchmark, dataset_dir

__all__ = ["LAYOUTS", "Layout", "locate"]


@dataclass(frozen=True)
class Layout(ABC):
    folder: str  # the dataset's folder under the data root
    description: str  # the expected layout, for error messages

    @abstractmethod
    def image(self, folder: Path, name: str, split: str) -> Path:
        """The query image of episode ``name``."""

    @abstractmethod
    def mask(self, folder: Path, name: str, split: str) -> Path:
        """Its mask."""

    def required(self, folder: Path, split: str) -> list[Path]:
        return [folder]


class _Pascal(Layout):
    def image(self, folder: Path, name: str, split: str) -> Path:
        return folder / "JPEGImages" / f"{name}.jpg"  # pascal.py:21, 95-97

    def mask(self, folder: Path, name: str, split: str) -> Path:
        return folder / "SegmentationClassAug" / f"{name}.png"  # pascal.py:22, 90-93

    def required(self, folder: Path, split: str) -> list[Path]:
        return [folder / "JPEGImages", folder / "SegmentationClassAug"]


class _Coco(Layout):
    def image(self, folder: Path, name: str, split: str) -> Path:
        return folder / name  # coco.py:89: <COCO2014>/<"val2014/COCO_val2014_...jpg">

    def mask(self, folder: Path, name: str, split: str) -> Path:
        cut = name.index(".jpg") if ".jpg" in name else len(name)
        return folder / "annotations" / f"{name[:cut]}.png"  # coco.py:81-84

    def required(self, folder: Path, split: str) -> list[Path]:
        sub = "train2014" if split == "train" else "val2014"
        return [folder / sub, folder / "annotations" / sub]


class _Fss(Layout):
    def image(self, folder: Path, name: str, split: str) -> Path:
        return folder / name  # "<class>/<n>.jpg"

    def mask(self, folder: Path, name: str, split: str) -> Path:
        cls, file = name.rsplit("/", 1)
        return folder / cls / f"{file.split('.')[0]}.png"  # fss.py:68-69


class _Synthetic(Layout):
    def _split(self, split: str) -> str:
        return benchmark("synthetic").split_name("train" if split == "train" else "val")

    def image(self, folder: Path, name: str, split: str) -> Path:
        return folder / "images" / self._split(split) / f"{name}.jpg"

    def mask(self, folder: Path, name: str, split: str) -> Path:
        return folder / "annotations" / self._split(split) / f"{name}.png"

    def required(self, folder: Path, split: str) -> list[Path]:
        s = self._split(split)
        return [folder / "images" / s, folder / "annotations" / s]


LAYOUTS: dict[str, Layout] = {
    "pascal5i": _Pascal(
        "VOC2012",
        "<root>/VOC2012/\n  JPEGImages/<id>.jpg\n  SegmentationClassAug/<id>.png  (SBD-augmented masks: 0 = "
        "background, 1..20, 255 = boundary)",
    ),
    "coco20i": _Coco(
        "COCO2014",
        "<root>/COCO2014/\n  train2014/*.jpg, val2014/*.jpg\n  annotations/train2014/*.png, "
        "annotations/val2014/*.png  (HSNet's masks: pixel = class + 1, 0 = background)\n"
        "<root>/splits/coco/{trn,val}/fold{0..3}.pkl  (or coco_lists=DIR)",
    ),
    "fss1000": _Fss("FSS-1000", "<root>/FSS-1000/<class>/<n>.jpg and <n>.png  (mask: >= 128 = foreground)"),
    "synthetic": _Synthetic(
        "ADEChallengeData2016",
        "<root>/ADEChallengeData2016/\n  images/{training,validation}/<stem>.jpg\n"
        "  annotations/{training,validation}/<stem>.png  (0 = unlabeled, k = class k - 1)\n"
        "<root>/classnames.json  (`lseg-pacl data synth` writes this world)",
    ),
}


def locate(name: str, root: str | Path, split: str) -> Path:
    """The benchmark's folder: ``root/<folder>``, or ``root`` itself when it is that folder; raises
    FileNotFoundError with the expected layout when what the split needs is absent."""
    layout = LAYOUTS[name]
    root = Path(root).expanduser()
    if name == "synthetic":
        folder = dataset_dir(benchmark("synthetic"), root)
    else:
        folder = (
            root / layout.folder if (root / layout.folder).is_dir() or root.name != layout.folder else root
        )
    absent = [p for p in layout.required(folder, split) if not p.is_dir()]
    if absent:
        raise FileNotFoundError(
            f"{name} ({split}) not found under {root}: {', '.join(map(str, absent))} missing. "
            f"Expected layout:\n"
            f"{layout.description}"
        )
    return folder
