"""``data prepare coco_object``: raw COCO-Stuff stuffthingmaps -> ``_instanceTrainIds.png`` exactly as the
lineage's ``datasets/cvt_coco_object.py`` writes them; atomic, resumable, never overwriting a different file;
then read by the coco_object benchmark."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image
from support.layouts import COCO_STUFF_UNUSED, make_coco_stuff, truncate, write_label_png

from data_modules.prepare import PREPARERS
from data_modules.prepare.coco_object import coco_object_lut, output_path
from data_modules.segmentation import SegmentationSet

prepare = PREPARERS["coco_object"].run

# SCLIP b56bd30 datasets/cvt_coco_object.py:18-191, ``clsID_to_trID``, transcribed: its keys in file order
# (values 0..170 in that order), and 255: 255.
_KEY_RUNS = ((0, 10), (12, 24), (26, 27), (30, 43), (45, 64), (66, 66), (69, 69), (71, 81), (83, 89),
             (91, 181))
CLS_ID_TO_TR_ID = {k: i for i, k in enumerate(k for a, b in _KEY_RUNS for k in range(a, b + 1))} | {255: 255}
# L193-197: "set to background": every value shifted by one, then every key above 90 set to 0
for _k, _v in CLS_ID_TO_TR_ID.items():
    CLS_ID_TO_TR_ID[_k] = _v + 1
    if _k > 90:
        CLS_ID_TO_TR_ID[_k] = 0


def convert_to_train_id(mask: np.ndarray) -> np.ndarray:
    """L200-204: each key's pixels (found in the unchanged input) get its value; other values stay."""
    out = mask.copy()
    for cls_id, tr_id in CLS_ID_TO_TR_ID.items():
        out[mask == cls_id] = tr_id
    return out


def read(path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img)


def test_the_transcribed_table_is_the_documented_rule():
    assert len(CLS_ID_TO_TR_ID) == 172
    assert set(CLS_ID_TO_TR_ID) | set(COCO_STUFF_UNUSED) == set(range(182)) | {255}
    things = {k: v for k, v in CLS_ID_TO_TR_ID.items() if v}
    assert sorted(things.values()) == list(range(1, 81)) and max(things) == 89
    assert CLS_ID_TO_TR_ID[0] == 1 and CLS_ID_TO_TR_ID[89] == 80 and CLS_ID_TO_TR_ID[91] == 0
    assert CLS_ID_TO_TR_ID[255] == 0


def test_every_raw_value_maps_as_the_script_does(tmp_path):
    keys = sorted(CLS_ID_TO_TR_ID)
    folder = make_coco_stuff(tmp_path, n=2, size=(24, 180), ids=keys)  # every key of the table, 2 images
    summary = prepare(root=str(tmp_path))
    assert [summary[k] for k in ("inputs", "written", "bad_inputs", "conflicts")] == [2, 2, 0, 0]
    ann = folder / "annotations" / "val2017"
    for raw_file in sorted(p for p in ann.glob("*.png") if "TrainIds" not in p.name):
        raw = read(raw_file)
        assert set(np.unique(raw).tolist()) == set(keys)
        out = ann / f"{raw_file.stem}_instanceTrainIds.png"
        with Image.open(out) as img:
            assert img.mode == "L"
        np.testing.assert_array_equal(read(out), convert_to_train_id(raw))
    lut = coco_object_lut()
    assert {k: int(lut[k]) for k in keys} == CLS_ID_TO_TR_ID  # the whole table, value by value
    assert all(lut[k] == -1 for k in COCO_STUFF_UNUSED)  # no entry: a bad input, never a silent class


def test_prepared_split_reads_as_81_classes(tmp_path):
    make_coco_stuff(tmp_path, n=3, ids=[0, 5, 89, 100, 255])
    prepare(root=str(tmp_path / "coco_stuff164k"), split="val2017")
    ds = SegmentationSet("coco_object", tmp_path, None, transform=None)
    assert len(ds) == 3 and len(ds.class_names) == 81 and ds.class_names[-1] == "toothbrush"
    for i, pair in enumerate(ds.pairs):
        raw = read(pair.mask.with_name(pair.mask.name.replace("_instanceTrainIds", "")))
        want = np.select([raw == 0, raw == 5, raw == 89], [1, 6, 80], 0)  # person, bus, toothbrush; rest 0
        np.testing.assert_array_equal(ds.load(i).mask, want)


def test_rerun_skips_identical_outputs_and_never_replaces_a_different_one(tmp_path):
    folder = make_coco_stuff(tmp_path, n=4, ids=[0, 12, 91, 255])
    first = prepare(root=str(tmp_path))
    assert (first["written"], first["skipped_same"]) == (4, 0)
    outs = sorted((folder / "annotations" / "val2017").glob("*_instanceTrainIds.png"))
    stamps = [o.stat().st_mtime_ns for o in outs]

    again = prepare(root=str(tmp_path))
    assert (again["written"], again["skipped_same"], again["conflicts"]) == (0, 4, 0)
    assert [o.stat().st_mtime_ns for o in outs] == stamps

    Image.fromarray(read(outs[1])).save(outs[1], "PNG", compress_level=0)  # same pixels, other bytes
    different = np.zeros((24, 32), np.uint8)
    write_label_png(outs[2], different)  # a different mask under the output's name
    outs[3].unlink()  # an interrupted run: one output missing
    before = outs[2].read_bytes()
    third = prepare(root=str(tmp_path))
    assert (third["written"], third["skipped_same"], third["conflicts"]) == (1, 2, 1)
    assert third["conflict_files"] == [str(outs[2])]
    assert outs[2].read_bytes() == before  # never replaced
    np.testing.assert_array_equal(read(outs[2]), different)


def test_a_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    folder = make_coco_stuff(tmp_path, n=3)
    ann = folder / "annotations" / "val2017"
    real_replace, calls = os.replace, []

    def failing_replace(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError("disk full")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        prepare(root=str(tmp_path))
    monkeypatch.setattr(os, "replace", real_replace)
    names = sorted(p.name for p in ann.iterdir())
    assert sum(n.endswith("_instanceTrainIds.png") for n in names) == 1  # the first only, whole
    assert not [n for n in names if n.startswith(".")]  # its temporary file removed
    resumed = prepare(root=str(tmp_path))
    assert (resumed["written"], resumed["skipped_same"]) == (2, 1)


def test_bad_inputs_are_counted_and_listed_not_raised(tmp_path):
    folder = make_coco_stuff(tmp_path, n=4, ids=[0, 91])
    ann = folder / "annotations" / "val2017"
    raws = sorted(ann.glob("*.png"))
    truncate(raws[0], 0.3)
    write_label_png(raws[1], np.full((24, 32), 11, np.uint8))  # an id the table has no entry for
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(raws[2])  # RGB, not a label map
    summary = prepare(root=str(tmp_path))
    assert (summary["inputs"], summary["written"], summary["bad_inputs"]) == (4, 1, 3)
    assert {b["file"]: b["reason"] for b in summary["bad"]} == {
        str(raws[0]): "bad_mask", str(raws[1]): "label_out_of_range", str(raws[2]): "bad_mask"}
    assert "[11]" in summary["bad"][1]["detail"]
    assert [output_path(r).is_file() for r in raws] == [False, False, False, True]


def test_inputs_named_train_ids_are_skipped_and_missing_data_is_explained(tmp_path):
    folder = make_coco_stuff(tmp_path, n=2, train_ids=True)  # also <stem>_labelTrainIds.png
    assert prepare(root=str(folder))["inputs"] == 2
    with pytest.raises(FileNotFoundError, match=r"annotations/val2017/<stem>\.png"):
        prepare(root=str(tmp_path / "nothing"))
