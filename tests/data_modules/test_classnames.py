"""Class-name lists against facts taken from MMSegmentation 1.x (mmseg/datasets/*.py) and COCO."""

from __future__ import annotations

import pytest

from data_modules import classnames as cn

ALL_LISTS = {
    "ADE20K_150": (cn.ADE20K_150, 150),
    "VOC20": (cn.VOC20, 20),
    "VOC21": (cn.VOC21, 21),
    "CONTEXT59": (cn.CONTEXT59, 59),
    "CONTEXT60": (cn.CONTEXT60, 60),
    "COCO_STUFF171": (cn.COCO_STUFF171, 171),
}


@pytest.mark.parametrize("name", sorted(ALL_LISTS))
def test_count_type_and_uniqueness(name):
    names, expected = ALL_LISTS[name]
    assert isinstance(names, tuple)
    assert len(names) == expected
    assert len(set(names)) == expected, f"{name} has duplicates"
    assert all(isinstance(n, str) and n == n.strip() and n for n in names)


def test_background_and_subsets():
    assert cn.VOC21[0] == cn.CONTEXT60[0] == "background"
    assert cn.VOC21[1:] == cn.VOC20
    assert cn.CONTEXT60[1:] == cn.CONTEXT59
    assert "background" not in cn.VOC20 and "background" not in cn.CONTEXT59
    # the 20 VOC classes are Pascal-Context classes, except that Context spells "diningtable" as "table"
    assert set(cn.VOC20) - set(cn.CONTEXT59) == {"diningtable"}
    assert "table" in cn.CONTEXT59


@pytest.mark.parametrize(
    ("names", "label", "index"),
    [
        (cn.ADE20K_150, "person", 12),
        (cn.ADE20K_150, "bed", 7),
        (cn.ADE20K_150, "flag", 149),
        (cn.VOC21, "person", 15),
        (cn.VOC21, "diningtable", 11),
        (cn.VOC21, "tvmonitor", 20),
        (cn.VOC20, "person", 14),
        (cn.VOC20, "aeroplane", 0),
        # mmseg 1.x orders Pascal-Context alphabetically after "background" (0.x did not)
        (cn.CONTEXT60, "person", 37),
        (cn.CONTEXT60, "aeroplane", 1),
        (cn.CONTEXT60, "bag", 2),
        (cn.CONTEXT60, "sky", 47),
        (cn.CONTEXT60, "wood", 59),
        (cn.CONTEXT59, "person", 36),
        (cn.CONTEXT59, "tvmonitor", 54),
        (cn.CONTEXT59, "wood", 58),
        (cn.COCO_STUFF171, "person", 0),
        (cn.COCO_STUFF171, "toothbrush", 79),
        (cn.COCO_STUFF171, "banner", 80),
        (cn.COCO_STUFF171, "road", 137),
        (cn.COCO_STUFF171, "wall-brick", 159),
        (cn.COCO_STUFF171, "wood", 170),
    ],
)
def test_positions(names, label, index):
    assert names.index(label) == index


def test_coco_stuff_raw_ids():
    raw = cn.COCO_STUFF_RAW_IDS
    unused = cn.COCO_STUFF_UNUSED_IDS
    assert unused == (11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90)
    assert len(raw) == len(set(raw)) == len(cn.COCO_STUFF171) == 171
    assert list(raw) == sorted(raw)
    assert all(0 <= k <= 181 for k in raw)
    assert not set(raw) & set(unused)
    assert set(raw) | set(unused) == set(range(182))
    # the 91 stuff classes use every raw id 91..181 (COCO-Stuff ids 92..182)
    assert raw[80:] == tuple(range(91, 182))


def test_coco_things_match_detection_category_ids():
    # COCO detection category ids 1..90 minus the 10 ids with no annotations, in id order
    missing = {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}
    detection_ids = [i for i in range(1, 91) if i not in missing]
    assert len(detection_ids) == 80
    assert [k + 1 for k in cn.COCO_STUFF_RAW_IDS[:80]] == detection_ids
    # spot checks of (COCO category id, name) from the official annotations
    by_raw = dict(zip(cn.COCO_STUFF_RAW_IDS, cn.COCO_STUFF171, strict=True))
    checks = [
        (1, "person"), (13, "stop sign"), (27, "backpack"), (44, "bottle"), (46, "wine glass"),
        (67, "dining table"), (70, "toilet"), (72, "tv"), (84, "book"), (90, "toothbrush"), (92, "banner"),
        (149, "road"), (171, "wall-brick"), (181, "window-other"), (182, "wood"),
    ]
    for coco_id, name in checks:
        assert by_raw[coco_id - 1] == name


@pytest.mark.parametrize(("names", "count"), [(cn.COCO_OBJECT, 81), (cn.CITYSCAPES, 19), (cn.ADE847, 847),
                                              (cn.PC459, 459)])
def test_new_lists_count_and_uniqueness(names, count):
    assert isinstance(names, tuple) and len(names) == len(set(names)) == count
    assert all(isinstance(n, str) and n for n in names)


def test_coco_object_is_background_and_the_lineage_spelling_of_the_80_things():
    # SCLIP custom_datasets.py COCOObjectDataset / configs/cls_coco_object.txt (mmseg spelling)
    assert cn.COCO_OBJECT[0] == "background" and cn.COCO_OBJECT[1:4] == ("person", "bicycle", "car")
    assert [cn.COCO_OBJECT.index(n) for n in ("motorcycle", "bed", "tv", "hair drier", "toothbrush")] == [
        4, 60, 63, 79, 80]


def test_cityscapes_in_train_id_order():
    assert cn.CITYSCAPES[:3] == ("road", "sidewalk", "building")
    assert cn.CITYSCAPES[6:8] == ("traffic light", "traffic sign") and cn.CITYSCAPES[-1] == "bicycle"
    assert sorted(cn.CITYSCAPES_TRAIN_IDS.values()) == list(range(19))


def test_large_vocabularies_keep_catsegs_strings():
    # CAT-Seg datasets/ade847.json: one prompt per class, commas inside; pc459.json: concatenated forms
    assert cn.ADE847[:2] == ("wall", "building, edifice")
    assert cn.ADE847[11] == "person, individual, someone, somebody, mortal, soul"
    assert cn.ADE847[-1] == "adding machine, totalizer, totaliser"
    assert cn.PC459[:3] == ("accordion", "aeroplane", "airconditioner") and cn.PC459[-1] == "wool"
    assert cn.PC459.index("unknown") == 430 and "tvmonitor" in cn.PC459
