"""``data prepare pc459``: Pascal Context ``trainval/<id>.mat`` (LabelMap, written here with
scipy.io.savemat) -> ``annotations_detectron2/pc459_val/<id>.tif`` as CAT-Seg's
``datasets/prepare_pascal_context_459.py`` writes it (LabelMap - 1, 0 -> 65535), read back as the pc459
benchmark."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io
from PIL import Image
from support.layouts import make_pascal_context_mats

from data_modules.prepare import PREPARERS
from data_modules.prepare.pc459 import VAL_IDS, to_train_ids, val_ids
from data_modules.segmentation import SegmentationSet

prepare = PREPARERS["pc459"].run


def read(path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img)


def test_the_shipped_val_list():
    ids = val_ids()
    assert len(ids) == len(set(ids)) == 5104 and ids[:2] == ["2008_000002", "2008_000003"]
    assert ids[-1] == "2010_006086" and VAL_IDS.name == "pascalcontext_val.txt"


def test_label_map_minus_one_with_zero_ignored():
    label_map = np.array([[0, 1, 2], [256, 459, 0]], dtype=np.uint16)
    out = to_train_ids(label_map)
    assert out.dtype == np.uint16 and out.tolist() == [[65535, 0, 1], [255, 458, 65535]]
    assert out.tolist() == (label_map - np.uint16(1)).tolist()  # the script's uint16 wrap-around: the same
    assert to_train_ids(label_map.astype(np.float64)).tolist() == out.tolist()  # a .mat saved as double
    with pytest.raises(ValueError, match=r"\[460\]"):
        to_train_ids(np.array([[1, 460]]))


def test_mats_to_tiffs_and_back(tmp_path):
    ids = val_ids()[:3]
    source = make_pascal_context_mats(tmp_path, ids, labels=(0, 1, 256, 459))
    summary = prepare(src=str(tmp_path / "VOCdevkit" / "VOC2010"))
    assert (summary["inputs"], summary["written"], summary["conflicts"]) == (5104, 3, 0)
    assert summary["bad_inputs"] == 5101 and {b["reason"] for b in summary["bad"]} == {"missing_file"}
    assert len(summary["bad"]) == 1000  # listed up to 1000, all counted
    out_dir = source / "annotations_detectron2" / "pc459_val"
    assert sorted(p.stem for p in out_dir.iterdir()) == ids
    for file_id in ids:
        label_map = scipy.io.loadmat(source / "trainval" / f"{file_id}.mat")["LabelMap"].astype(np.int64)
        tif = out_dir / f"{file_id}.tif"
        with Image.open(tif) as img:
            assert img.format == "TIFF" and img.mode == "I;16"
        np.testing.assert_array_equal(read(tif), np.where(label_map == 0, 65535, label_map - 1))
    ds = SegmentationSet("pc459", tmp_path, None, transform=None)
    assert len(ds) == 3 and len(ds.class_names) == 459 and ds.ignore_index == 65535
    mask = ds.load(0).mask
    assert mask.dtype == np.uint16 and set(np.unique(mask).tolist()) == {0, 255, 458, 65535}

    again = prepare(src=str(source))
    assert (again["written"], again["skipped_same"]) == (0, 3)


def test_another_root_gets_the_images_too(tmp_path):
    ids = val_ids()[:2]
    source = make_pascal_context_mats(tmp_path / "src", ids)
    summary = prepare(src=str(tmp_path / "src"), root=str(tmp_path / "out"))
    assert summary["written"] == 4  # 2 labels + 2 images
    ds = SegmentationSet("pc459", tmp_path / "out", None, transform=None)
    assert [p.image.name for p in ds.pairs] == [f"{i}.jpg" for i in ids]
    assert ds.pairs[0].image.read_bytes() == (source / "JPEGImages" / f"{ids[0]}.jpg").read_bytes()
    (ds.pairs[1].image).write_bytes(b"another picture")
    again = prepare(src=str(tmp_path / "src"), root=str(tmp_path / "out"))
    assert (again["skipped_same"], again["conflicts"]) == (3, 1)
    assert ds.pairs[1].image.read_bytes() == b"another picture"


def test_bad_mats_are_listed_and_not_written(tmp_path):
    ids = val_ids()[:4]
    source = make_pascal_context_mats(tmp_path, ids)
    (source / "trainval" / f"{ids[0]}.mat").write_bytes(b"MATLAB 5.0 MAT-file, broken")
    scipy.io.savemat(source / "trainval" / f"{ids[1]}.mat", {"Other": np.zeros((2, 2))})
    scipy.io.savemat(source / "trainval" / f"{ids[2]}.mat", {"LabelMap": np.full((4, 4), 460, np.uint16)})
    (source / "JPEGImages" / f"{ids[3]}.jpg").unlink()
    summary = prepare(src=str(source))
    assert summary["written"] == 0
    listed = {b["file"].rsplit("/", 1)[-1]: b for b in summary["bad"]}
    assert listed[f"{ids[0]}.mat"]["reason"] == "bad_mask"
    assert "LabelMap" in listed[f"{ids[1]}.mat"]["detail"]
    assert "460" in listed[f"{ids[2]}.mat"]["detail"]
    assert listed[f"{ids[3]}.jpg"]["reason"] == "missing_file"


def test_missing_release_and_other_splits(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"trainval/<id>\.mat"):
        prepare(src=str(tmp_path))
    with pytest.raises(ValueError, match="val only"):
        prepare(src=str(tmp_path), split="train")
