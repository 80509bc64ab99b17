"""``data check``: every sample read as training would; counts, label histogram after mapping, problems."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support.layouts import (
    make_ade,
    make_ade847,
    make_coco_captions,
    make_pc459,
    make_shards,
    truncate,
    write_label_png,
)

from data_modules.check import check_dataset


def test_segmentation_check_counts_pairs_histogram_and_problems(tmp_path):
    folder = make_ade(tmp_path, n=4, ids=[0, 1, 7])
    masks = sorted((folder / "annotations" / "validation").glob("*.png"))
    images = sorted((folder / "images" / "validation").glob("*.jpg"))
    truncate(images[1], 0.3)
    write_label_png(masks[2], np.full((24, 32), 151, np.uint8))
    report = check_dataset("ade20k", str(tmp_path), workers=0)
    assert report["images"] == 4 and report["pairs_ok"] == 2
    assert report["problem_counts"] == {"bad_image": 1, "label_out_of_range": 1}
    assert {p["file"] for p in report["problems"]} == {str(images[1]), str(masks[2])}
    expected = {}
    for m in (masks[0], masks[3]):
        raw = np.asarray(Image.open(m))
        for raw_id, mapped in ((0, "255"), (1, "0"), (7, "6")):
            expected[mapped] = expected.get(mapped, 0) + int((raw == raw_id).sum())
    assert report["label_hist"] == expected and sum(expected.values()) == 2 * 24 * 32


def test_parallel_check_gives_the_same_report(tmp_path):
    make_ade(tmp_path, n=5, ids=[0, 3])
    assert check_dataset("ade20k", str(tmp_path), workers=2) == check_dataset(
        "ade20k", str(tmp_path), workers=0
    )


def test_caption_checks(tmp_path):
    coco = make_coco_captions(tmp_path, n=4, captions_per_image=5)
    truncate(next((coco / "train2017").glob("*.jpg")), 0.2)
    ann = coco / "annotations" / "captions_train2017.json"
    data = json.loads(ann.read_text())
    data["annotations"].append({"id": 9999, "image_id": data["images"][0]["id"], "caption": "  "})
    data["annotations"].append({"id": 9998, "caption": "no image id"})
    data["images"].append({"id": 5000, "file_name": "lonely.jpg"})
    ann.write_text(json.dumps(data))
    report = check_dataset("coco_captions", str(coco))
    assert report["images"] == 4 and report["pairs_ok"] == 15 and report["label_hist"] is None
    assert report["problem_counts"] == {
        "bad_image": 1,
        "empty_caption": 1,
        "bad_annotation": 1,
        "no_caption": 1,
    }
    assert {"file": str(coco / "train2017" / "lonely.jpg"), "reason": "no_caption"} in report["problems"]
    shards = make_shards(
        tmp_path / "shards",
        n_shards=3,
        per_shard=4,
        captions=lambda i: b"\xff\xfe" if i == 5 else f"a dog {i}",
    )
    report = check_dataset("shards", str(tmp_path / "shards"))
    assert (report["shards"], report["images"], report["pairs_ok"]) == (3, 12, 11)
    assert report["problems"] == [{"file": f"{shards[1]}:000000005", "reason": "caption_not_utf8"}]


@pytest.mark.parametrize(("name", "make", "top"), [("ade847", make_ade847, 846), ("pc459", make_pc459, 458)])
def test_sixteen_bit_histogram_keeps_class_255_apart_from_the_ignore(tmp_path, name, make, top):
    make(tmp_path, n=2, ids=[0, 255, top, 65535])
    report = check_dataset(name, str(tmp_path))
    assert report["pairs_ok"] == 2 and report["problems"] == [] and report["ignore_index"] == 65535
    hist = report["label_hist"]
    assert set(hist) == {"0", "255", str(top), "65535"} and sum(hist.values()) == 2 * 24 * 32
    masks = sorted(Path(report["root"]).rglob("*.tif"))
    assert hist["255"] == sum(int((np.asarray(Image.open(m)) == 255).sum()) for m in masks)
    assert hist["65535"] == sum(int((np.asarray(Image.open(m)) == 65535).sum()) for m in masks)
    assert check_dataset("ade20k", str(make_ade(tmp_path, n=1, ids=[0, 1])))["ignore_index"] == 255


def test_episode_check_reads_every_episode_and_lists_the_bad_ones(tmp_path):
    """FSS-1000's test classes (data_modules/class_lists/fewshot/fss/test.txt): every jpg is an episode."""
    from data_modules.check import check_episodes
    from data_modules.episodes.lists import fss_categories

    rng = np.random.default_rng(0)
    classes = fss_categories("test")[:2]
    for cls in classes:
        folder = tmp_path / "FSS-1000" / cls
        folder.mkdir(parents=True)
        for i in (1, 2, 3):
            Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)).save(folder / f"{i}.jpg")
            mask = np.zeros((20, 30), np.uint8)
            mask[:, :10] = 255  # a third of each mask is the class
            Image.fromarray(mask).save(folder / f"{i}.png")
    (tmp_path / "FSS-1000" / classes[1] / "2.jpg").write_bytes(b"not a jpeg")
    report = check_episodes("fss1000", str(tmp_path), workers=0)
    assert report["images"] == 6 and report["pairs_ok"] == 5
    assert report["folds"] == {"0": {"episodes": 6, "ok": 5}}
    assert sum(report["problem_counts"].values()) == 1 and classes[1] in report["problems"][0]["file"]
    size = 480 * 480  # episodes are read at the protocol's size
    assert report["label_hist"] == {"0": 5 * size * 2 // 3, "1": 5 * size // 3}
