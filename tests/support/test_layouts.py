"""The on-disk layout builders (support/layouts.py) write what they claim."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image
from support.layouts import (
    add_tar_member,
    ade_seg_rgb,
    coco_object_train_ids,
    label_grid,
    make_ade,
    make_ade20k_full_release,
    make_ade847,
    make_cityscapes,
    make_coco_captions,
    make_coco_object,
    make_coco_stuff,
    make_context,
    make_pascal_context_mats,
    make_pc459,
    make_shards,
    make_voc,
    truncate,
    voc_palette,
    write_jpeg,
    write_label_png,
)

RGB = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)


def _ids(path: Path) -> set[int]:
    return set(np.unique(np.asarray(Image.open(path))).tolist())


def test_jpeg_exif_orientation(tmp_path):
    write_jpeg(tmp_path / "a" / "o.jpg", RGB, exif_orientation=6)
    write_jpeg(tmp_path / "plain.jpg", RGB)
    with Image.open(tmp_path / "a" / "o.jpg") as im:
        assert im.format == "JPEG" and im.size == (32, 24) and im.getexif()[0x0112] == 6
    with Image.open(tmp_path / "plain.jpg") as im:
        assert 0x0112 not in im.getexif()


def test_label_png_modes(tmp_path):
    ids = np.array([[0, 1, 20], [255, 7, 0]], dtype=np.uint8)
    write_label_png(tmp_path / "l.png", ids)
    write_label_png(tmp_path / "p.png", ids, mode="P")
    write_label_png(tmp_path / "i.png", np.array([[0, 300], [65535, 2]]), mode="I;16")
    assert Image.open(tmp_path / "l.png").mode == "L"
    assert np.asarray(Image.open(tmp_path / "l.png")).tolist() == ids.tolist()
    p = Image.open(tmp_path / "p.png")
    assert p.mode == "P" and p.getpalette()[:768] == voc_palette()
    assert np.asarray(p).tolist() == ids.tolist()
    assert np.asarray(p.convert("L")).tolist() != ids.tolist()
    assert np.asarray(Image.open(tmp_path / "i.png")).astype(int).tolist() == [[0, 300], [65535, 2]]
    with pytest.raises(ValueError):
        write_label_png(tmp_path / "bad.png", np.array([[256]]))


def test_voc_palette_is_the_standard_one():
    pal = voc_palette()
    assert len(pal) == 768
    assert pal[:12] == [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0]
    assert pal[255 * 3 : 256 * 3] == [224, 224, 192]


@pytest.mark.parametrize(
    "ids", [[5], [0, 1, 2, 150], list(range(12)), list(range(30)), list(range(200)), [0, 1000]]
)
def test_label_grid_holds_every_id(ids):
    a = label_grid((24, 32), ids, seed=3)
    assert a.shape == (24, 32) and set(np.unique(a).tolist()) == set(ids)
    assert np.array_equal(a, label_grid((24, 32), ids, seed=3))
    with pytest.raises(ValueError):
        label_grid((2, 2), range(5))


def test_make_ade(tmp_path):
    base = make_ade(tmp_path, ids=(0, 3, 150, 151), seed=1)
    assert base == tmp_path / "ADEChallengeData2016"
    imgs = sorted((base / "images" / "validation").glob("*.jpg"))
    assert [p.stem for p in imgs] == [f"ADE_val_{i:08d}" for i in range(1, 5)]
    for p in imgs:
        ann = base / "annotations" / "validation" / f"{p.stem}.png"
        assert Image.open(ann).mode == "L" and Image.open(ann).size == Image.open(p).size == (32, 24)
        assert _ids(ann) == {0, 3, 150, 151}
    assert _ids(
        make_ade(tmp_path / "d", split="training") / "annotations/training/ADE_train_00000001.png"
    ) == {
        0,
        1,
        2,
        150,
    }


def test_builders_are_deterministic(tmp_path):
    def files(base):
        return {p.relative_to(base): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()}

    assert files(make_ade(tmp_path / "a", seed=5)) == files(make_ade(tmp_path / "b", seed=5))
    assert files(make_ade(tmp_path / "a", seed=5)) != files(make_ade(tmp_path / "c", seed=6))
    assert files(Path(make_shards(tmp_path / "s1", 2)[0]).parent) == files(
        Path(make_shards(tmp_path / "s2", 2)[0]).parent
    )


def test_make_voc(tmp_path):
    base = make_voc(tmp_path, split="train")
    assert base == tmp_path / "VOCdevkit" / "VOC2012"
    names = (base / "ImageSets" / "Segmentation" / "train.txt").read_text().split()
    assert names[0] == "2007_000033" and len(names) == 4
    for name in names:
        assert Image.open(base / "JPEGImages" / f"{name}.jpg").size == (32, 24)
        m = Image.open(base / "SegmentationClass" / f"{name}.png")
        assert m.mode == "P" and m.size == (32, 24)
        assert set(np.unique(np.asarray(m)).tolist()) == {0, 1, 20, 255}
        assert not np.array_equal(np.asarray(m.convert("L")), np.asarray(m))
    plain = make_voc(tmp_path / "nb", ids=(0, 5), boundary=False)
    assert _ids(plain / "SegmentationClass" / "2007_000033.png") == {0, 5}


def test_make_context(tmp_path):
    base = make_context(tmp_path)
    assert base == tmp_path / "VOCdevkit" / "VOC2010"
    names = (base / "ImageSets" / "SegmentationContext" / "val.txt").read_text().split()
    for name in names:
        assert (base / "JPEGImages" / f"{name}.jpg").is_file()
        m = Image.open(base / "SegmentationClassContext" / f"{name}.png")
        assert m.mode == "L" and set(np.unique(np.asarray(m)).tolist()) == {0, 1, 59}


def test_make_coco_stuff_and_train_ids(tmp_path):
    ids = (0, 10, 11, 12, 90, 91, 181, 255)
    base = make_coco_stuff(tmp_path, ids=ids, train_ids=True)
    ann = base / "annotations" / "val2017"
    assert (base / "images" / "val2017" / "000000000139.jpg").is_file()
    raw = np.asarray(Image.open(ann / "000000000139.png"))
    tid = np.asarray(Image.open(ann / "000000000139_labelTrainIds.png"))
    assert set(np.unique(raw).tolist()) == set(ids)
    expected = {0: 0, 10: 10, 11: 255, 12: 11, 90: 255, 91: 80, 181: 170, 255: 255}
    for r, t in expected.items():
        assert set(np.unique(tid[raw == r]).tolist()) == {t}
    assert _ids(make_coco_stuff(tmp_path / "d") / "annotations/val2017/000000000140.png") >= {
        0,
        10,
        12,
        181,
        255,
    }
    assert not list((tmp_path / "d").rglob("*_labelTrainIds.png"))


def test_make_coco_captions(tmp_path):
    base = make_coco_captions(tmp_path, split="val2017", n=3, captions_per_image=5)
    data = json.loads((base / "annotations" / "captions_val2017.json").read_text())
    assert len(data["images"]) == 3 and len(data["annotations"]) == 15
    assert len({a["id"] for a in data["annotations"]}) == 15
    for img in data["images"]:
        with Image.open(base / "val2017" / img["file_name"]) as im:
            assert im.size == (img["width"], img["height"]) == (32, 24)
        caps = [a["caption"] for a in data["annotations"] if a["image_id"] == img["id"]]
        assert len(caps) == 5 and all(isinstance(c, str) and c for c in caps)


def test_make_shards(tmp_path):
    paths = make_shards(tmp_path / "shards", n_shards=3, per_shard=5)
    assert [p.name for p in paths] == ["00000.tar", "00001.tar", "00002.tar"]
    with tarfile.open(paths[1]) as tf:
        names = tf.getnames()
        assert names[:3] == ["000000005.jpg", "000000005.json", "000000005.txt"]
        assert names[-1] == "000000009.txt" and len(names) == 15
        assert tf.extractfile("000000007.txt").read() == b"a photo of sample 7"
        meta = json.loads(tf.extractfile("000000007.json").read())
        img = Image.open(tf.extractfile("000000007.jpg"))
        img.load()
    assert (
        meta["key"] == "000000007"
        and meta["status"] == "success"
        and meta["caption"] == "a photo of sample 7"
    )
    assert img.size == (meta["width"], meta["height"]) == (32, 24)
    assert {"url", "original_width", "original_height"} <= meta.keys()


def test_shard_caption_bytes_verbatim(tmp_path):
    bad = b"caf\xe9 \xff\xfe"
    paths = make_shards(
        tmp_path, n_shards=1, per_shard=2, captions=lambda i: bad if i == 1 else f"ok {i} \u00e9"
    )
    with tarfile.open(paths[0]) as tf:
        assert tf.extractfile("000000001.txt").read() == bad
        assert tf.extractfile("000000000.txt").read() == "ok 0 \u00e9".encode()


def test_add_tar_member_and_truncate(tmp_path):
    (path,) = make_shards(tmp_path, n_shards=1, per_shard=1)
    add_tar_member(path, "000000001.jpg", b"not a jpeg")
    with tarfile.open(path) as tf:
        assert (
            tf.getnames()[-1] == "000000001.jpg" and tf.extractfile("000000001.jpg").read() == b"not a jpeg"
        )
    jpg = tmp_path / "t.jpg"
    write_jpeg(jpg, RGB)
    size = jpg.stat().st_size
    truncate(jpg)
    assert jpg.stat().st_size == size // 2
    with pytest.raises(OSError):
        Image.open(jpg).load()
    (shard,) = make_shards(tmp_path / "cut", n_shards=1, per_shard=4)
    size = shard.stat().st_size
    truncate(shard, keep=0.4)
    assert shard.stat().st_size == int(size * 0.4)
    read = []
    try:
        with tarfile.open(shard) as tf:
            read = [tf.extractfile(m).read() and m.name for m in tf.getmembers()]
    except tarfile.ReadError:
        pass
    assert len(read) < 12


def test_new_layout_builders(tmp_path):
    city = make_cityscapes(tmp_path, per_city=1, ids=[0, 7, 26])
    gt = sorted((city / "gtFine" / "val").rglob("*.png"))
    assert [p.name for p in gt] == ["frankfurt_000000_000019_gtFine_labelIds.png",
                                    "frankfurt_000000_000019_gtFine_labelTrainIds.png",
                                    "lindau_000000_000019_gtFine_labelIds.png",
                                    "lindau_000000_000019_gtFine_labelTrainIds.png"]
    assert _ids(gt[0]) == {0, 7, 26} and _ids(gt[1]) == {255, 0, 13}
    assert Image.open(next((city / "leftImg8bit").rglob("*.png"))).mode == "RGB"

    coco = make_coco_object(tmp_path, n=1, ids=[0, 89, 91, 255])
    assert _ids(next((coco / "annotations" / "val2017").glob("*_instanceTrainIds.png"))) == {1, 80, 0}
    assert coco_object_train_ids(np.array([[0, 1, 12, 90, 91, 255]])).tolist() == [[1, 2, 12, 0, 0, 0]]

    for make in (make_ade847, make_pc459):
        base = make(tmp_path, n=1, ids=[0, 300, 65535])
        tif = next(base.rglob("*.tif"))
        with Image.open(tif) as img:
            assert img.mode == "I;16" and set(np.unique(np.asarray(img)).tolist()) == {0, 300, 65535}

    rng = np.random.default_rng(0)
    seg = ade_seg_rgb(np.array([[2978, 3148], [5, 0]]), rng)
    assert ((seg[..., 0] // 10).astype(int) * 256 + seg[..., 1]).tolist() == [[2978, 3148], [5, 0]]
    release = make_ade20k_full_release(tmp_path, [("ADE_val_00000001.jpg", (8, 12), (2978,))])
    assert next(release.rglob("ADE_val_00000001_seg.png")).is_file()

    voc = make_pascal_context_mats(tmp_path / "pc", ["2008_000002"], labels=(0, 459))
    label_map = scipy.io.loadmat(voc / "trainval" / "2008_000002.mat")["LabelMap"]
    assert label_map.dtype == np.uint16 and set(np.unique(label_map).tolist()) == {0, 459}
