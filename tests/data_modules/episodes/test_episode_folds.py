"""Fold class ids, class names and the shipped lists equal the official definitions (lang-seg @ bb00b21)."""

import subprocess

import pytest
from episode_official import MIRROR

from data_modules.episodes import class_names, fold_classes, lists
from data_modules.episodes.folds import EPISODE_BENCHMARKS, fold_count, normalise_split
from data_modules.synthetic import CLASS_NAMES

SHIPPED_FILES = (
    [(f"label_files/fewshot_{b}.txt", f"fewshot_{b}.txt") for b in ("pascal", "coco", "fss")]
    + [
        (f"fewshot_data/data/splits/pascal/{s}/fold{i}.txt", f"pascal/{s}/fold{i}.txt")
        for s in ("trn", "val")
        for i in range(4)
    ]
    + [(f"fewshot_data/data/splits/fss/{s}.txt", f"fss/{s}.txt") for s in ("trn", "val", "test")]
)


def official_pascal_class_ids(fold, split, nclass=20, nfolds=4):
    """pascal.py:111-119."""
    nclass_trn = nclass // nfolds
    class_ids_val = [fold * nclass_trn + i for i in range(nclass_trn)]
    class_ids_trn = [x for x in range(nclass) if x not in class_ids_val]
    return class_ids_trn if split == "trn" else class_ids_val


def official_coco_class_ids(fold, split, nclass=80, nfolds=4):
    """coco.py:62-68."""
    nclass_trn = nclass // nfolds
    class_ids_val = [fold + nfolds * v for v in range(nclass_trn)]
    class_ids_trn = [x for x in range(nclass) if x not in class_ids_val]
    return class_ids_trn if split == "trn" else class_ids_val


@pytest.mark.parametrize("fold", range(4))
def test_pascal_and_coco_folds_are_the_official_ones(fold):
    assert fold_classes("pascal5i", fold, "test") == official_pascal_class_ids(fold, "val")
    assert fold_classes("pascal5i", fold, "train") == official_pascal_class_ids(fold, "trn")
    assert fold_classes("pascal5i", fold, "test") == list(range(5 * fold, 5 * fold + 5))  # contiguous
    assert fold_classes("coco20i", fold, "test") == official_coco_class_ids(fold, "val")
    assert fold_classes("coco20i", fold, "train") == official_coco_class_ids(fold, "trn")
    assert fold_classes("coco20i", fold, "test") == list(range(fold, 80, 4))  # interleaved
    assert fold_classes("coco", fold, "val") == fold_classes("coco20i", fold, "test")  # official names, val


def test_fss_and_synthetic_classes():
    """fss.py:118-125; the world: 5 interleaved folds of 2."""
    assert fold_classes("fss1000", 0, "train") == list(range(0, 520))
    assert fold_classes("fss1000", 0, "val") == list(range(520, 760))
    assert fold_classes("fss1000", 0, "test") == list(range(760, 1000))
    for f in range(5):
        assert fold_classes("synthetic", f, "test") == [f, f + 5]
        assert fold_classes("synthetic", f, "train") == [c for c in range(10) if c not in (f, f + 5)]
    assert class_names("synthetic") == list(CLASS_NAMES)
    assert EPISODE_BENCHMARKS == ("pascal5i", "coco20i", "fss1000", "synthetic")
    assert [fold_count(b) for b in EPISODE_BENCHMARKS] == [4, 4, 1, 5]
    with pytest.raises(ValueError, match="folds 0..3"):
        fold_classes("pascal5i", 4, "test")
    with pytest.raises(ValueError, match="folds 0..0"):
        fold_classes("fss1000", 1, "test")
    with pytest.raises(ValueError, match="unknown split"):
        normalise_split("pascal5i", "validation")
    with pytest.raises(ValueError, match="unknown episode benchmark"):
        fold_classes("voc", 0, "test")


def test_class_names_are_the_official_strings():
    pascal = class_names("pascal5i")
    assert len(pascal) == 20 and len(class_names("coco20i")) == 80 and len(class_names("fss1000")) == 1000
    assert [pascal[c] for c in fold_classes("pascal5i", 2, "test")] == [
        "diningtable",
        "dog",
        "horse",
        "motorbike",
        "person",
    ]
    assert [pascal[c] for c in fold_classes("pascal5i", 0, "test")] == [
        "aeroplane",
        "bicycle",
        "bird",
        "boat",
        "bottle",
    ]
    coco = class_names("coco20i")
    assert coco[:5] == ["person", "bicycle", "car", "motorbike", "aeroplane"] and "trafficlight" in coco
    # fewshot_fss.txt is the sorted trn, val and test names one after the other: FSS class id -> name
    fss = class_names("fss1000")
    assert fss == lists.fss_categories("trn") + lists.fss_categories("val") + lists.fss_categories("test")
    assert fss[760] == sorted(lists.fss_categories("test"))[0]


def test_list_counts_first_and_last_lines():
    """Checked without the mirror: the official counts (method-notes §7) and the files' ends."""
    val = [lists.pascal_list("val", i) for i in range(4)]
    assert [len(v) for v in val] == [346, 451, 725, 346]
    assert [len(lists.pascal_list("trn", i)) for i in range(4)] == [2286, 3425, 5883, 2086]
    assert val[0][0] == ("2007_000033", 0) and val[0][-1][1] == 4
    for i, v in enumerate(val):
        assert {c for _, c in v} == set(fold_classes("pascal5i", i, "test"))
    for i in range(4):
        assert {c for _, c in lists.pascal_list("trn", i)} == set(fold_classes("pascal5i", i, "test"))
    assert [len(lists.fss_categories(s)) for s in ("trn", "val", "test")] == [520, 240, 240]
    test = lists.fss_categories("test")
    assert all("\r" not in c and c for c in test)  # test.txt has CRLF ends, read with universal newlines
    assert "bus" in test and "hotel_slipper" in test
    assert len(set(lists.fss_categories("trn")) | set(lists.fss_categories("val")) | set(test)) == 1000


def _official_bytes(path: str) -> bytes | None:
    if not MIRROR.exists():
        return None
    return subprocess.run(
        ["git", "-C", str(MIRROR), "show", f"HEAD:{path}"], check=True, capture_output=True
    ).stdout


@pytest.mark.parametrize(("official", "shipped"), SHIPPED_FILES)
def test_shipped_lists_are_byte_identical_to_the_official_files(official, shipped):
    want = _official_bytes(official)
    if want is None:
        pytest.skip(f"lang-seg mirror not at {MIRROR}: byte comparison skipped (counts checked above)")
    assert (lists.shipped_dir() / shipped).read_bytes() == want


def test_source_md_names_every_shipped_file():
    text = (lists.shipped_dir() / "SOURCE.md").read_text()
    assert "bb00b21" in text and "small" in text
    for _, shipped in SHIPPED_FILES:
        stem = shipped.split("/")[0]
        assert stem in text
