"""``data prepare ade847``: a tiny ADE20K_2021_17_01 release (index_ade20k.pkl, images, ``_seg.png``) -> the
detectron2 layout as CAT-Seg's ``datasets/prepare_ade20k_full.py`` writes it, read back as the ade847
benchmark; the index pickle is loaded without ever running code."""

from __future__ import annotations

import io
import json
import os
import pickle

import cv2
import numpy as np
import pytest
from PIL import Image
from support.layouts import make_ade20k_full_release

from data_modules.prepare import PREPARERS, InputError
from data_modules.prepare.ade847 import IDS_FILE, ade_ids, target_size
from data_modules.prepare.safe_pickle import RefusedGlobal, load_data_pickle
from data_modules.segmentation import SegmentationSet

prepare = PREPARERS["ade847"].run
# prepare_ade20k_full.py:14-15, 928: the first two and the last entry of the table (ADE object id -> trainId)
WALL, BUILDING, ADDING_MACHINE = 2978, 312, 3148
UNLISTED = 5  # an ADE object id that is not among the 847
SAMPLES = [
    ("ADE_val_00000001.jpg", (20, 30), (WALL, BUILDING, ADDING_MACHINE, UNLISTED)),
    ("ADE_train_00000001.jpg", (16, 16), (WALL,)),
    ("ADE_val_00000002.jpg", (520, 600), (WALL, ADDING_MACHINE, UNLISTED)),  # short side 520 > 512: resized
]
TRAIN_ID = {WALL: 0, BUILDING: 1, ADDING_MACHINE: 846, UNLISTED: 65535}


def read(path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img)


def expected(release_root, name: str) -> tuple[np.ndarray, np.ndarray]:
    """The image and label the script writes, computed here from the release files with OpenCV."""
    folder = next((release_root / "ADE20K_2021_17_01" / "images" / "ADE").rglob(name)).parent
    img, seg = read(folder / name), read(folder / name.replace(".jpg", "_seg.png"))
    classes = (seg[:, :, 0] // 10).astype(np.int32) * 256 + seg[:, :, 1]
    label = np.vectorize(TRAIN_ID.__getitem__)(classes).astype(np.uint16)
    h, w = img.shape[:2]
    if min(h, w) > 512:
        size = (512, round(w / h * 512)) if w >= h else (round(h / w * 512), 512)
        img = cv2.resize(img, size[::-1], interpolation=cv2.INTER_LINEAR)
        label = cv2.resize(label.astype(np.int32), size[::-1], interpolation=cv2.INTER_NEAREST)
        label = label.astype(np.uint16)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG")
    return read(buf), label


def test_the_shipped_table():
    ids = ade_ids()
    assert len(ids) == len(set(ids)) == 847
    assert ids[:2] == [WALL, BUILDING] and ids[-1] == ADDING_MACHINE and UNLISTED not in ids
    assert "prepare_ade20k_full.py:13-929" in json.loads(IDS_FILE.read_text())["source"]


def test_resize_rule():
    assert target_size(20, 30) is None and target_size(512, 900) is None
    assert target_size(520, 600) == (512, 591) and target_size(600, 520) == (591, 512)
    assert target_size(513, 513) == (512, 512)


def test_release_to_detectron2_layout_and_back(tmp_path):
    release = make_ade20k_full_release(tmp_path, SAMPLES)
    summary = prepare(src=str(release))
    assert (summary["inputs"], summary["written"], summary["bad_inputs"]) == (2, 4, 0)  # val; 2 files each
    images = release / "images_detectron2" / "validation"
    labels = release / "annotations_detectron2" / "validation"
    assert sorted(p.name for p in images.iterdir()) == ["ADE_val_00000001.jpg", "ADE_val_00000002.jpg"]
    for name in ("ADE_val_00000001.jpg", "ADE_val_00000002.jpg"):
        want_img, want_label = expected(tmp_path, name)
        tif = labels / name.replace(".jpg", ".tif")
        with Image.open(tif) as img:
            assert img.format == "TIFF" and img.mode == "I;16"
        np.testing.assert_array_equal(read(tif), want_label)
        np.testing.assert_array_equal(read(images / name), want_img)
    assert read(labels / "ADE_val_00000002.tif").shape == (512, 591)
    assert set(np.unique(read(labels / "ADE_val_00000001.tif")).tolist()) == {0, 1, 846, 65535}

    ds = SegmentationSet("ade847", tmp_path, None, transform=None)
    assert len(ds) == 2 and len(ds.class_names) == 847 and ds.class_names[1] == "building, edifice"
    loaded = ds.load(1)
    assert loaded.mask.dtype == np.uint16 and loaded.image.shape == (512, 591, 3)

    again = prepare(src=str(release), root=str(tmp_path))  # root: the folder holding the release
    assert (again["written"], again["skipped_same"], again["conflicts"]) == (0, 4, 0)


def test_training_split_and_another_output_root(tmp_path):
    release = make_ade20k_full_release(tmp_path / "src", SAMPLES)
    summary = prepare(src=str(release), root=str(tmp_path / "out"), split="training")
    assert (summary["inputs"], summary["written"]) == (1, 2)
    out = tmp_path / "out" / "ADE20K_2021_17_01"
    written = [p.name for p in (out / "annotations_detectron2" / "training").iterdir()]
    assert written == ["ADE_train_00000001.tif"]
    with pytest.raises(ValueError, match="split=test"):
        prepare(src=str(release), split="test")


def test_a_different_existing_output_is_a_conflict_left_alone(tmp_path):
    release = make_ade20k_full_release(tmp_path, SAMPLES[:1])
    tif = release / "annotations_detectron2" / "validation" / "ADE_val_00000001.tif"
    tif.parent.mkdir(parents=True)
    Image.fromarray(np.zeros((20, 30), np.uint16)).save(tif, "TIFF")
    before = tif.read_bytes()
    summary = prepare(src=str(release))
    assert (summary["written"], summary["conflicts"], summary["conflict_files"]) == (1, 1, [str(tif)])
    assert tif.read_bytes() == before


def test_bad_samples_are_listed(tmp_path):
    release = make_ade20k_full_release(tmp_path, SAMPLES)
    folder = next((release / "images" / "ADE" / "validation").rglob("ADE_val_00000001_seg.png")).parent
    (folder / "ADE_val_00000001_seg.png").unlink()
    seg2 = next(release.rglob("ADE_val_00000002_seg.png"))
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(seg2)  # not the image's size
    summary = prepare(src=str(release))
    assert (summary["inputs"], summary["written"], summary["bad_inputs"]) == (2, 0, 2)
    assert sorted(b["reason"] for b in summary["bad"]) == ["missing_file", "size_mismatch"]


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_numpy_data_loads_under_every_protocol(tmp_path, protocol):
    release = make_ade20k_full_release(tmp_path, SAMPLES[:1], protocol=protocol)
    index = load_data_pickle(release / "index_ade20k.pkl")
    assert index["filename"] == ["ADE_val_00000001.jpg"]
    assert index["objectnames"].tolist() == ["wall", "building, edifice"]
    assert index["objectPresence"].dtype == np.uint16 and index["objectPresence"].shape == (2, 1)


class _RunsCode:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


class _Evals:
    def __reduce__(self):
        return eval, ("1 + 1",)


@pytest.mark.parametrize("payload", ["system", "eval"])
def test_a_pickle_that_asks_to_run_code_is_refused(tmp_path, payload):
    marker = tmp_path / "ran"
    bad = _RunsCode(f"touch {marker}") if payload == "system" else _Evals()
    index = {"filename": ["ADE_val_00000001.jpg"], "folder": ["ADE20K_2021_17_01/x"], "hook": bad}
    release = make_ade20k_full_release(tmp_path, SAMPLES[:1], index=index)
    with pytest.raises(RefusedGlobal, match="builtins.eval" if payload == "eval" else r"(posix|os)\.system"):
        load_data_pickle(release / "index_ade20k.pkl")
    with pytest.raises(InputError, match="refused"):
        prepare(src=str(release))
    assert not marker.exists()
    assert not (release / "images_detectron2").exists()
    with open(release / "index_ade20k.pkl", "rb") as f:  # the file does hold the call a plain load would make
        assert payload.encode() in f.read()


def test_index_problems_are_one_message(tmp_path):
    release = make_ade20k_full_release(tmp_path, SAMPLES[:1], index={"filenames": []})
    with pytest.raises(InputError, match="'folder' and 'filename'"):
        prepare(src=str(release))
    (release / "index_ade20k.pkl").write_bytes(pickle.dumps({"folder": [1]})[:-3])
    with pytest.raises(InputError, match="cannot read"):
        prepare(src=str(release))
    with pytest.raises(FileNotFoundError, match="index_ade20k.pkl"):
        prepare(src=str(tmp_path / "elsewhere"))
