"""EpisodeSet items equal a transcription of the official __getitem__ (fewshot_data/data/*.py @ bb00b21) on a
tiny fake HSNet layout in the real formats: image to 1e-6, target exactly."""

import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from episode_official import (
    official_coco_item,
    official_fss_item,
    official_pascal_item,
    official_transform,
    write_coco,
    write_fss,
    write_pickle,
    write_voc,
)
from PIL import Image
from torch.utils.data import DataLoader

from data_modules.bad_samples import EVENTS, Skipped
from data_modules.episodes import EpisodeSet, collate_episodes, fold_classes, lists
from data_modules.images import read_label_png

pytest.importorskip("torchvision")  # the official transform is torchvision's

VAL0 = [("2007_000001", 0), ("2007_000002", 3), ("2007_000003", 4)]
TRN = {f: [(f"2008_{f}{k:05d}", c) for c in range(5 * f, 5 * f + 5) for k in range(2)] for f in (1, 2, 3)}


@pytest.fixture
def voc(tmp_path, monkeypatch):
    """Shipped lists copied, PASCAL's replaced by small ones naming the fake images."""
    shipped = tmp_path / "lists"
    shutil.copytree(lists.shipped_dir(), shipped)
    (shipped / "pascal" / "val" / "fold0.txt").write_text("".join(f"{n}__{c + 1:02d}\n" for n, c in VAL0))
    for f, entries in TRN.items():
        (shipped / "pascal" / "trn" / f"fold{f}.txt").write_text(
            "".join(f"{n}__{c + 1:02d}\n" for n, c in entries)
        )
    monkeypatch.setattr(lists, "SHIPPED", shipped)
    root = tmp_path / "data"
    write_voc(root, VAL0 + [e for f in (1, 2, 3) for e in TRN[f]])
    return root


@pytest.mark.parametrize("size", [61, 480])
def test_pascal_test_items_equal_the_official_ones(voc, size):
    ds = EpisodeSet("pascal5i", voc, 0, "test", size=size, episodes=3 if size == 480 else None)
    assert len(ds) == (3 if size == 480 else 1000)
    for i in range(3):
        item = ds[i if size == 480 else i + 3 * 111]  # 333 % 3 == 0: the list cycles
        name, cls = VAL0[i]
        img, mask, boundary = official_pascal_item(str(voc), name, cls, size)
        assert item["name"] == name and item["class_id"] == cls and "support_image" not in item
        assert item["image"].shape == (3, size, size) and item["image"].dtype == torch.float32
        torch.testing.assert_close(item["image"], img, atol=1e-6, rtol=0)
        want = mask.long() + (boundary * 255).long()  # evaluation.py:17-21: gt + ignore * 255
        assert item["target"].dtype == torch.long and torch.equal(item["target"], want)
        assert (want == 255).any() and (want == 1).any() and (want == 0).any()


def test_pascal_training_items_see_boundaries_as_background(voc):
    ds = EpisodeSet("pascal5i", voc, 0, "train", size=40, seed=3)
    assert len(ds) == 30 and set(ds.class_ids) == set(range(5, 20))
    for key in [(0, 0), (0, 7), (2, 29)]:
        item = ds[key]
        e, support = ds.episode(key[1], key[0])
        assert item["name"] == e.query and item["support_name"] == support != e.query
        for prefix, name in (("", e.query), ("support_", support)):
            img, mask, boundary = official_pascal_item(str(voc), name, e.class_id, 40)
            torch.testing.assert_close(item[f"{prefix}image"], img, atol=1e-6, rtol=0)
            assert torch.equal(item[f"{prefix}target"], mask.long())  # the training loss's target
            assert boundary.any() and not (item[f"{prefix}target"] == 255).any()
    ds.set_epoch(2)
    assert ds[29]["support_name"] == ds[(2, 29)]["support_name"]


def test_coco_test_items_equal_the_official_ones(tmp_path):
    ids = fold_classes("coco20i", 3, "test")
    classwise = {c: [] for c in range(80)}
    classwise[ids[0]] = ["val2014/COCO_val2014_000000000001.jpg", "val2014/COCO_val2014_000000000002.jpg"]
    classwise[ids[1]] = ["val2014/COCO_val2014_000000000002.jpg", "val2014/COCO_val2014_000000000003.jpg"]
    for c in ids[2:]:
        classwise[c] = ["val2014/COCO_val2014_000000000003.jpg"]
    write_coco(tmp_path, classwise)
    write_pickle(tmp_path / "lists" / "val" / "fold3.pkl", classwise, 2)
    ds = EpisodeSet("coco20i", tmp_path, 3, "test", size=52, coco_lists=tmp_path / "lists", episodes=12)
    for i in range(12):
        item = ds[i]
        img, mask = official_coco_item(str(tmp_path / "COCO2014"), item["name"], item["class_id"], 52)
        torch.testing.assert_close(item["image"], img, atol=1e-6, rtol=0)
        assert torch.equal(item["target"], mask.long())
    assert any(ds[i]["target"].any() for i in range(12))


def test_fss_test_items_equal_the_official_ones(tmp_path):
    test = lists.fss_categories("test")
    write_fss(tmp_path, [test[3]], n=3)
    ds = EpisodeSet(
        "fss1000", tmp_path, 0, "test", size=45, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)
    )
    assert len(ds) == 3
    for i in range(3):
        item = ds[i]
        path = str(tmp_path / "FSS-1000" / item["name"])
        img, mask = official_fss_item(path, 45, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
        torch.testing.assert_close(item["image"], img, atol=1e-6, rtol=0)
        assert torch.equal(item["target"], mask.long()) and item["class_id"] == 763


def test_synthetic_items(world):
    test = EpisodeSet("synthetic", world, 2, "test", size=70)
    train = EpisodeSet("synthetic", world, 2, "train", size=70)
    t = official_transform(70, (0.5,) * 3, (0.5,) * 3)
    for ds, split, folder in ((test, "test", "validation"), (train, "train", "training")):
        for i in (0, len(ds) - 1):
            item = ds[(0, i)]
            base = world / "ADEChallengeData2016"
            img = t(Image.open(base / "images" / folder / f"{item['name']}.jpg").convert("RGB"))
            torch.testing.assert_close(item["image"], img, atol=1e-6, rtol=0)
            raw = torch.from_numpy(read_label_png(base / "annotations" / folder / f"{item['name']}.png"))
            raw = F.interpolate(raw[None, None].float(), (70, 70), mode="nearest")[0, 0]
            want = (raw == item["class_id"] + 1).long()
            if split == "test":
                want[raw == 0] = 255
            assert torch.equal(item["target"], want)
            assert ("support_image" in item) == (split == "train")


def test_bad_files_are_skipped_and_counted(voc):
    (voc / "VOC2012" / "JPEGImages" / "2007_000002.jpg").unlink()
    (voc / "VOC2012" / "SegmentationClassAug" / "2007_000003.png").write_bytes(b"\x89PNG broken")
    ds = EpisodeSet("pascal5i", voc, 0, "test", size=32, episodes=3)
    assert isinstance(ds[0], dict)
    assert ds[1] == Skipped("missing_file", str(voc / "VOC2012" / "JPEGImages" / "2007_000002.jpg"))
    assert isinstance(ds[2], Skipped) and ds[2].reason == "bad_mask"
    batch = next(iter(DataLoader(ds, batch_size=3, collate_fn=collate_episodes)))
    assert batch["image"].shape == (1, 3, 32, 32) and batch["target"].shape == (1, 32, 32)
    assert batch["class_id"].tolist() == [0] and batch["name"] == ["2007_000001"]
    assert sorted(r for r, _ in batch[EVENTS]) == ["bad_mask", "missing_file"]


def test_training_batches_collate(voc):
    ds = EpisodeSet("pascal5i", voc, 0, "train", size=24)
    batch = collate_episodes([ds[(0, i)] for i in range(4)])
    assert batch["support_image"].shape == (4, 3, 24, 24) and batch["support_target"].dtype == torch.long
    assert np.all(np.array(batch["support_name"]) != np.array(batch["name"]))
