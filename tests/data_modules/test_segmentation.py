"""Segmentation samples: bad inputs come back as counted skips, EXIF orientation follows the mask, and the
synthetic world reads like any benchmark."""

import numpy as np
import pytest
import torch
from PIL import Image
from support.layouts import make_ade, truncate, write_jpeg

from data_modules.bad_samples import EVENTS, Skipped
from data_modules.images import read_label_png
from data_modules.segmentation import IGNORE_INDEX, SegmentationSet, collate_segmentation
from data_modules.synthetic import CLASS_NAMES
from data_modules.transforms import segmentation_eval_transform

T = segmentation_eval_transform(16, (0.5,) * 3, (0.5,) * 3)


@pytest.fixture
def ade(tmp_path):
    return make_ade(tmp_path, n=4, size=(24, 32), ids=[0, 1, 2])


def files(folder, i):
    image = sorted((folder / "images" / "validation").glob("*.jpg"))[i]
    return image, folder / "annotations" / "validation" / f"{image.stem}.png"


def test_palette_png_gives_indices_not_luminance(tmp_path):
    idx = np.array([[0, 1], [2, 3]], dtype=np.uint8)
    img = Image.fromarray(idx, mode="P")
    img.putpalette([0, 0, 0, 255, 255, 255, 10, 200, 30, 250, 0, 0] + [0] * (256 * 3 - 12))
    img.save(tmp_path / "p.png")
    assert read_label_png(tmp_path / "p.png").tolist() == idx.tolist()


def test_bad_inputs_are_skipped_with_their_reason(ade):
    image1, _ = files(ade, 1)
    truncate(image1, 0.4)
    _, mask2 = files(ade, 2)
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(mask2)  # wrong size
    _, mask3 = files(ade, 3)
    Image.fromarray(np.zeros((24, 32, 3), np.uint8)).save(mask3)  # an RGB picture, not a label map
    ds = SegmentationSet("ade20k", ade, None, T)
    items = [ds[i] for i in range(4)]
    assert isinstance(items[0], dict)
    assert [(it.reason, it.file) for it in items[1:]] == [
        ("bad_image", str(image1)), ("size_mismatch", str(files(ade, 2)[0])), ("bad_mask", str(mask3))]
    batch = collate_segmentation(items)
    assert batch["image"].shape[0] == 1 and [r for r, _ in batch[EVENTS]] == ["bad_image", "size_mismatch",
                                                                           "bad_mask"]


def test_a_batch_of_only_bad_samples_collates_to_events():
    batch = collate_segmentation([Skipped("bad_image", "a.jpg"), Skipped("missing_file", "b.png")])
    assert "image" not in batch and batch[EVENTS] == [("bad_image", "a.jpg"), ("missing_file", "b.png")]


def test_exif_orientation_follows_the_mask(ade):
    image, mask = files(ade, 0)
    stored = np.asarray(Image.open(image).convert("RGB"))
    # 1) pixels stored sideways with orientation 6 (rotate for viewing): the viewed image matches a rotated
    # mask
    write_jpeg(image, np.ascontiguousarray(np.rot90(stored, 1)), exif_orientation=6)
    raw = read_label_png(mask).astype(np.uint8)
    ds = SegmentationSet("ade20k", ade, None, T)
    loaded = ds.load(0)
    assert loaded.image.shape[:2] == (24, 32) and loaded.notes == []
    # 2) the mask was drawn on the stored (sideways) pixels: those are used, and the sample is noted
    Image.fromarray(np.ascontiguousarray(np.rot90(raw, 1))).save(mask)
    loaded = ds.load(0)
    assert loaded.image.shape[:2] == (32, 24) and [r for r, _ in loaded.notes] == ["exif_ignored"]
    assert ds[0][EVENTS] == [("exif_ignored", str(image))]


def test_synthetic_world_reads_as_a_benchmark(world):
    ds = SegmentationSet(
        "synthetic", world, "validation", segmentation_eval_transform(64, (0.5,) * 3, (0.5,) * 3)
    )
    assert ds.class_names == CLASS_NAMES and len(ds) == 8
    item = ds[0]
    assert item["image"].shape == (3, 64, 64) and item["mask"].dtype == torch.long
    assert set(item["mask"].unique().tolist()) <= set(range(len(CLASS_NAMES))) | {IGNORE_INDEX}
    raw = read_label_png(ds.pairs[0].mask)
    np.testing.assert_array_equal(item["mask"].numpy(), np.where(raw == 0, IGNORE_INDEX, raw - 1))
