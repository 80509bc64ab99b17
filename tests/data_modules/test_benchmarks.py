"""Every benchmark read from small fixtures in its real on-disk layout: counts, label mappings, class
lists."""

import numpy as np
import pytest
import torch
from PIL import Image
from support.layouts import (
    CITYSCAPES_TRAIN_ID,
    COCO_STUFF_UNUSED,
    COCO_THINGS_RAW,
    make_ade,
    make_ade847,
    make_cityscapes,
    make_coco_object,
    make_coco_stuff,
    make_context,
    make_pc459,
    make_voc,
    write_label_png,
    write_label_tiff,
)

from data_modules.bad_samples import Skipped
from data_modules.benchmarks import BENCHMARKS, coco_stuff_raw_lut, map_labels, shifted_lut
from data_modules.segmentation import SegmentationDataModule, SegmentationSet
from data_modules.transforms import segmentation_eval_transform

T = segmentation_eval_transform(16, (0.5,) * 3, (0.5,) * 3)


def raw_of(path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img).astype(np.int64)


def expect(raw: np.ndarray, table: dict[int, int]) -> np.ndarray:
    out = np.full(raw.shape, -1)
    for k, v in table.items():
        out[raw == k] = v
    assert (out >= 0).all(), "the fixture holds ids the table does not cover"
    return out


@pytest.mark.parametrize(
    ("name", "make", "ids", "table", "classes"),
    [
        ("ade20k", make_ade, [0, 1, 2, 150], {0: 255, 1: 0, 2: 1, 150: 149}, 150),
        ("voc20", make_voc, [0, 1, 20], {0: 255, 1: 0, 20: 19, 255: 255}, 20),
        ("voc21", make_voc, [0, 1, 20], {0: 0, 1: 1, 20: 20, 255: 255}, 21),
        ("context59", make_context, [0, 1, 59], {0: 255, 1: 0, 59: 58}, 59),
        ("context60", make_context, [0, 1, 59], {0: 0, 1: 1, 59: 59}, 60),
        (
            "coco_stuff171",
            make_coco_stuff,
            [0, 10, 11, 12, 90, 91, 181, 255],
            {0: 0, 10: 10, 11: 255, 12: 11, 90: 255, 91: 80, 181: 170, 255: 255},
            171,
        ),
    ],
)
def test_label_mapping_and_counts(tmp_path, name, make, ids, table, classes):
    folder = make(tmp_path, n=3, ids=ids)
    ds = SegmentationSet(name, tmp_path, None, T)  # the data root: the standard folder is found under it
    assert ds.dir == folder and len(ds) == 3 and len(ds.class_names) == classes
    for i, pair in enumerate(ds.pairs):
        loaded = ds.load(i)
        np.testing.assert_array_equal(loaded.mask, expect(raw_of(pair.mask), table))
        assert loaded.image.shape[:2] == loaded.mask.shape
    item = ds[0]
    assert item["image"].shape == (3, 16, 16) and item["mask"].shape == (16, 16)


def test_voc_palette_masks_give_indices_and_keep_the_255_boundary(tmp_path):
    make_voc(tmp_path, n=2, ids=[0, 3, 20], boundary=True)
    ds = SegmentationSet("voc20", tmp_path / "VOCdevkit" / "VOC2012", "val", T)
    with Image.open(ds.pairs[0].mask) as img:
        assert img.mode == "P"
        luminance = np.asarray(img.convert("L"))
    mask = ds.load(0).mask
    assert {2, 19, 255} <= set(np.unique(mask).tolist())  # 3 -> 2, 20 -> 19, boundaries and background -> 255
    assert not np.array_equal(mask, luminance)


def test_coco_stuff_prefers_mmseg_converted_masks(tmp_path):
    make_coco_stuff(tmp_path, n=2, ids=[0, 12, 181, 255], train_ids=True)
    ds = SegmentationSet("coco_stuff171", tmp_path, None, T)
    assert all(p.converted and p.mask.name.endswith("_labelTrainIds.png") for p in ds.pairs)
    for i, pair in enumerate(ds.pairs):
        raw = raw_of(pair.mask.with_name(pair.mask.name.replace("_labelTrainIds", "")))
        np.testing.assert_array_equal(ds.load(i).mask, expect(raw, {0: 0, 12: 11, 181: 170, 255: 255}))


def test_coco_stuff_tables():
    lut = coco_stuff_raw_lut()
    used = [k for k in range(182) if k not in COCO_STUFF_UNUSED]
    assert lut[used].tolist() == list(range(171))
    assert all(lut[k] == 255 for k in COCO_STUFF_UNUSED) and lut[255] == 255
    assert map_labels(np.array([[182]]), lut)[0] is None  # beyond the raw id range


def test_out_of_range_ids_are_refused_not_wrapped():
    lut = shifted_lut(150, zero_is_ignore=True)
    mask, bad = map_labels(np.array([[1, 151, 256 + 1]]), lut)  # 257 would wrap to 1 as uint8
    assert mask is None and bad == [151, 257]
    assert map_labels(np.array([[70000]]), lut) == (None, [70000])


def test_class_name_counts_and_split_defaults():
    counts = {n: len(b.classes) for n, b in BENCHMARKS.items() if b.classes is not None}
    assert counts == {"ade20k": 150, "voc20": 20, "voc21": 21, "context59": 59, "context60": 60,
                      "coco_stuff171": 171, "coco_object": 81, "cityscapes": 19, "ade847": 847, "pc459": 459}
    splits = {n: b.default_split for n, b in BENCHMARKS.items()}
    assert (splits["coco_object"], splits["cityscapes"], splits["ade847"], splits["pc459"]) == (
        "val2017", "val", "validation", "val")
    ignore = {n: b.ignore_index for n, b in BENCHMARKS.items() if b.ignore_index != 255}
    assert ignore == {"ade847": 65535, "pc459": 65535}
    assert (
        BENCHMARKS["voc21"].classes[0] == "background"
        and BENCHMARKS["voc21"].classes[1:] == BENCHMARKS["voc20"].classes
    )


def test_missing_dataset_shows_the_expected_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"SegmentationClassContext/<id>.png") as err:
        SegmentationSet("context59", tmp_path, None, T)
    assert "ImageSets/SegmentationContext/val.txt" in str(err.value)


def test_missing_files_listed_in_the_split_are_skipped(tmp_path):
    folder = make_voc(tmp_path, n=3)
    split = folder / "ImageSets" / "Segmentation" / "val.txt"
    split.write_text(split.read_text() + "2099_999999\n")
    ds = SegmentationSet("voc21", folder, None, T)
    assert len(ds) == 4
    item = ds[3]
    assert isinstance(item, Skipped) and item.reason == "missing_file" and "2099_999999" in item.file


def test_sixteen_bit_masks_keep_their_values(tmp_path):
    folder = make_ade(tmp_path, n=1, ids=[0, 5])
    mask_file = next((folder / "annotations" / "validation").glob("*.png"))
    raw = raw_of(mask_file)
    write_label_png(mask_file, raw.astype(np.uint16), mode="I;16")
    ds = SegmentationSet("ade20k", folder, None, T)
    np.testing.assert_array_equal(ds.load(0).mask, expect(raw, {0: 255, 5: 4}))
    raw[0, 0] = 256 + 5  # would read as 5 if wrapped to uint8
    write_label_png(mask_file, raw.astype(np.uint16), mode="I;16")
    assert ds[0].reason == "label_out_of_range"


def test_one_datamodule_serves_several_benchmarks(tmp_path):
    make_ade(tmp_path, n=2)
    make_voc(tmp_path, n=3)
    dm = SegmentationDataModule({"ade20k": tmp_path, "voc20": tmp_path}, None, T, batch_size=2, num_workers=0)
    dm.setup("validate")
    assert [(n, len(c)) for n, c in dm.val_benchmarks] == [("ade20k", 150), ("voc20", 20)]
    loaders = dm.val_dataloader()
    assert [sum(b["image"].shape[0] for b in dl) for dl in loaders] == [2, 3]


# --- COCO-Object, Cityscapes, ADE20K-847, Pascal Context-459 ---------------------------------------------


def test_coco_object_reads_the_converted_masks(tmp_path):
    make_coco_object(tmp_path, n=3, ids=[0, 1, 89, 91, 181, 255])  # person, bicycle, toothbrush, stuff, void
    ds = SegmentationSet("coco_object", tmp_path, None, T)
    assert len(ds) == 3 and len(ds.class_names) == 81 and ds.class_names[:2] == ("background", "person")
    assert ds.bench.background_index == 0 and ds.ignore_index == 255
    assert all(p.mask.name.endswith("_instanceTrainIds.png") for p in ds.pairs)
    for i, pair in enumerate(ds.pairs):
        raw = raw_of(pair.mask.with_name(pair.mask.name.replace("_instanceTrainIds", "")))
        mask = ds.load(i).mask
        assert mask.dtype == np.uint8 and 255 not in mask  # nothing is ignored on COCO-Object
        np.testing.assert_array_equal(mask, expect(raw, {0: 1, 1: 2, 89: 80, 91: 0, 181: 0, 255: 0}))
    assert len(COCO_THINGS_RAW) == 80 and ds.class_names[80] == "toothbrush"


def test_coco_object_without_converted_masks_says_how_to_make_them(tmp_path):
    make_coco_stuff(tmp_path, n=2)  # the raw maps only
    with pytest.raises(FileNotFoundError, match="_instanceTrainIds.png") as err:
        SegmentationSet("coco_object", tmp_path, None, T)
    assert "lseg-pacl data prepare coco_object root=DIR" in str(err.value)
    assert "images/val2017/<stem>.jpg" in str(err.value)


@pytest.mark.parametrize("files", ["train_ids", "label_ids", "both"])
def test_cityscapes_train_ids_or_label_ids_by_the_official_table(tmp_path, files):
    label_ids = list(range(34))  # every labelId: 19 evaluated, 15 ignored
    folder = make_cityscapes(tmp_path, per_city=2, size=(16, 40), ids=label_ids,
                             train_ids=files != "label_ids", label_ids=files != "train_ids")
    ds = SegmentationSet("cityscapes", tmp_path, None, T)
    assert ds.dir == folder and len(ds) == 4 and len(ds.class_names) == 19
    assert ds.class_names[0] == "road" and ds.class_names[18] == "bicycle" and ds.split == "val"
    want_suffix = "_gtFine_labelIds.png" if files == "label_ids" else "_gtFine_labelTrainIds.png"
    assert all(p.mask.name.endswith(want_suffix) for p in ds.pairs)
    assert [p.image.parent.name for p in ds.pairs] == ["frankfurt", "frankfurt", "lindau", "lindau"]
    table = {k: CITYSCAPES_TRAIN_ID.get(k, 255) for k in range(34)}
    for i, pair in enumerate(ds.pairs):
        label_file = pair.mask.parent / pair.mask.name.replace(want_suffix, "_gtFine_labelIds.png")
        if files == "train_ids":  # no labelIds file: its trainIds were written from the same labelIds grid
            mask = ds.load(i).mask
            assert set(np.unique(mask).tolist()) == set(range(19)) | {255}
            continue
        np.testing.assert_array_equal(ds.load(i).mask, expect(raw_of(label_file), table))
    assert ds[0]["image"].shape == (3, 16, 16)


def test_cityscapes_label_ids_table_and_bad_ids():
    lut = BENCHMARKS["cityscapes"].lut(19, converted=False)
    assert {k: int(lut[k]) for k in (7, 8, 11, 17, 24, 26, 31, 33)} == {
        7: 0, 8: 1, 11: 2, 17: 5, 24: 11, 26: 13, 31: 16, 33: 18}
    assert all(lut[k] == 255 for k in (0, 1, 2, 3, 4, 5, 6, 9, 10, 14, 15, 16, 18, 29, 30))
    assert map_labels(np.array([[34]]), lut)[0] is None  # beyond labelIds 0..33


@pytest.mark.parametrize(("name", "make", "top"), [("ade847", make_ade847, 846), ("pc459", make_pc459, 458)])
def test_sixteen_bit_tiff_benchmarks_ignore_65535_and_keep_class_255(tmp_path, name, make, top):
    folder = make(tmp_path, n=3, ids=[0, 255, 256, top, 65535])
    ds = SegmentationSet(name, tmp_path, None, T)
    assert ds.dir == folder and len(ds) == 3 and ds.ignore_index == 65535
    assert len(ds.class_names) == top + 1
    for i, pair in enumerate(ds.pairs):
        assert pair.mask.suffix == ".tif"
        with Image.open(pair.mask) as img:
            assert img.mode == "I;16"
        mask = ds.load(i).mask
        assert mask.dtype == np.uint16
        np.testing.assert_array_equal(mask, raw_of(pair.mask))  # kept as they are: 255 a class, 65535 ignored
        assert {255, 65535} <= set(np.unique(mask).tolist())
    item = ds[0]
    assert item["mask"].dtype == torch.long and {255, 65535} <= set(item["mask"].unique().tolist())
    write_label_tiff(ds.pairs[1].mask, np.full((24, 32), top + 1))  # one past the last class
    assert ds[1].reason == "label_out_of_range"


def test_pc459_lists_its_tif_files(tmp_path):
    folder = make_pc459(tmp_path, n=2)
    images = folder / "JPEGImages"
    (images / "2099_000001.jpg").write_bytes((images / "2008_000002.jpg").read_bytes())  # an image, no label
    ds = SegmentationSet("pc459", folder, None, T)
    assert [p.image.name for p in ds.pairs] == ["2008_000002.jpg", "2008_000003.jpg"]


@pytest.mark.parametrize(
    ("name", "shown"),
    [("ade847", "annotations_detectron2/validation/<stem>.tif"), ("pc459", "pc459_val/<id>.tif"),
     ("cityscapes", "gtFine/val/<city>/<stem>_gtFine_labelTrainIds.png")],
)
def test_missing_new_benchmarks_show_their_layout(tmp_path, name, shown):
    with pytest.raises(FileNotFoundError, match="Expected layout") as err:
        SegmentationSet(name, tmp_path, None, T)
    assert shown in str(err.value)
    if name != "cityscapes":
        assert f"lseg-pacl data prepare {name} src=" in str(err.value)


def test_ade847_folder_without_tif_files_says_how_to_make_them(tmp_path):
    folder = make_ade847(tmp_path, n=1)
    for tif in (folder / "annotations_detectron2" / "validation").glob("*.tif"):
        tif.unlink()
    with pytest.raises(FileNotFoundError, match=r"no \*\.tif in"):
        SegmentationSet("ade847", tmp_path, None, T)


def test_val_and_train_mean_each_dataset_s_own_split_names(tmp_path):
    """What a newcomer types: split=val is ADE20K's validation, COCO's val2017, VOC's val; train alike."""
    from data_modules.benchmarks import BENCHMARKS, benchmark

    expected = {"ade20k": ("validation", "training"), "coco_stuff171": ("val2017", "train2017"),
                "coco_object": ("val2017", "train2017"), "voc21": ("val", "train"),
                "cityscapes": ("val", "train"), "ade847": ("validation", "training")}
    for name, (val, train) in expected.items():
        b = benchmark(name)
        assert (b.split_name("val"), b.split_name(None), b.split_name("train")) == (val, val, train)
        assert b.split_name("trainaug") == "trainaug"  # any other name as it is
    assert all(b.split_name("val") == b.default_split for b in BENCHMARKS.values())
    make_ade(tmp_path, split="validation", n=2)
    data = SegmentationSet("ade20k", tmp_path, "val", transform=lambda **kw: kw)
    assert data.split == "validation" and len(data) == 2


def test_caption_splits_take_the_short_words_too():
    from data_modules.captions import caption_split

    assert [caption_split(s) for s in ("train", "val", None, "train2014")] == [
        "train2017", "val2017", "train2017", "train2014"]
