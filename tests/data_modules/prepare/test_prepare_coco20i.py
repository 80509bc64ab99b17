"""``data prepare coco20i``: COCO 2014 ``instances_<split>.json`` (polygons, an uncompressed and a compressed
RLE, written here in COCO's formats) -> HSNet's ``annotations/<split>/<stem>.png`` (class index + 1, 0
elsewhere), pixel-exact against masks built directly here; HSNet's fold pickles -> plain text lists, through
the restricted unpickler (a pickle with a payload is refused and runs nothing)."""

from __future__ import annotations

import json
import math
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support.layouts import write_jpeg, write_label_png

from data_modules.prepare import PREPARERS, InputError
from data_modules.prepare.coco20i import annotation_mask, counts_from_string, polygon_mask

prepare = PREPARERS["coco20i"].run
# The 80 COCO thing category ids (1..90 less the 10 unused); class index = position in this order
COCO_IDS = [i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]
SPLIT = "val2014"


# cocoapi common/maskApi.c (Simplified BSD; github.com/cocodataset/cocoapi), transcribed line by line: the
# reference the converter's numpy code must match.


def rle_encode(mask: np.ndarray) -> list[int]:
    """``rleEncode``: run lengths of the column-major mask, starting with a run of 0s."""
    flat = np.asarray(mask, dtype=np.uint8).T.ravel()
    cnts, p, c = [], 0, 0
    for value in flat:
        if value != p:
            cnts.append(c)
            c, p = 0, value
        c += 1
    cnts.append(c)
    return cnts


def rle_to_string(cnts: list[int]) -> str:
    """``rleToString``: 'Similar to LEB128 but using 6 bits/char and ascii chars 48-111.'"""
    s = []
    for i in range(len(cnts)):
        x = cnts[i]
        if i > 2:
            x -= cnts[i - 2]
        more = 1
        while more:
            c = x & 0x1F
            x >>= 5  # arithmetic shift, as C's on a signed long
            more = (x != -1) if (c & 0x10) else (x != 0)
            if more:
                c |= 0x20
            c += 48
            s.append(chr(c))
    return "".join(s)


def rle_decode(cnts: list[int], h: int, w: int) -> np.ndarray:
    """``rleDecode``."""
    out, v = [], 0
    for c in cnts:
        out += [v] * c
        v = 1 - v
    return np.array(out, dtype=bool).reshape(w, h).T


def rle_fr_poly(xy: list[float], h: int, w: int) -> list[int]:
    """``rleFrPoly``, loops and all (C's (int) casts truncate toward zero, as Python's int(); 0/0 on a
    zero-length edge gives NaN, cast by x86 to INT_MIN)."""
    scale, k = 5.0, len(xy) // 2
    x = [int(scale * xy[j * 2 + 0] + 0.5) for j in range(k)]
    y = [int(scale * xy[j * 2 + 1] + 0.5) for j in range(k)]
    x.append(x[0])
    y.append(y[0])
    u, v = [], []
    for j in range(k):
        xs, xe, ys, ye = x[j], x[j + 1], y[j], y[j + 1]
        dx, dy = abs(xe - xs), abs(ys - ye)
        flip = (dx >= dy and xs > xe) or (dx < dy and ys > ye)
        if flip:
            xs, xe, ys, ye = xe, xs, ye, ys
        if dx >= dy:
            s = (ye - ys) / dx if dx else math.nan
        else:
            s = (xe - xs) / dy
        if dx >= dy:
            for d in range(dx + 1):
                t = dx - d if flip else d
                u.append(t + xs)
                val = ys + s * t + 0.5
                v.append(-(2**31) if math.isnan(val) else int(val))
        else:
            for d in range(dy + 1):
                t = dy - d if flip else d
                v.append(t + ys)
                u.append(int(xs + s * t + 0.5))
    bx, by = [], []
    for j in range(1, len(u)):
        if u[j] != u[j - 1]:
            xd = float(u[j] if u[j] < u[j - 1] else u[j] - 1)
            xd = (xd + 0.5) / scale - 0.5
            if math.floor(xd) != xd or xd < 0 or xd > w - 1:
                continue
            yd = float(v[j] if v[j] < v[j - 1] else v[j - 1])
            yd = (yd + 0.5) / scale - 0.5
            if yd < 0:
                yd = 0
            elif yd > h:
                yd = h
            yd = math.ceil(yd)
            bx.append(int(xd))
            by.append(int(yd))
    a = sorted([bx[j] * h + by[j] for j in range(len(bx))] + [h * w])
    p = 0
    for j in range(len(a)):
        t = a[j]
        a[j] -= p
        p = t
    b, j = [a[0]], 1
    while j < len(a):
        if a[j] > 0:
            b.append(a[j])
            j += 1
        else:
            j += 1
            if j < len(a):
                b[-1] += a[j]
                j += 1
    return b


# A small COCO 2014 release.

H1, W1 = 30, 41  # image 1 (non-square)
H2, W2 = 23, 17  # image 2


def stem(n: int) -> str:
    return f"COCO_{SPLIT}_{n:012d}"


def expected_masks() -> dict[int, np.ndarray]:
    """What each image's mask must be, built directly: class index + 1 of the instances, painted in order."""
    m1 = np.zeros((H1, W1), np.uint8)
    m1[2:9, 10:20] = COCO_IDS.index(1) + 1  # person: a polygon with fractional corners (centres inside)
    m1[12:20, 3:8] = COCO_IDS.index(1) + 1  # ...and a second polygon of the same instance
    m1[5:25, 15:35] = COCO_IDS.index(90) + 1  # toothbrush: an uncompressed crowd RLE, over the person
    m1[0:4, 38:41] = COCO_IDS.index(44) + 1  # bottle: a compressed RLE, in the image's corner
    m2 = np.zeros((H2, W2), np.uint8)
    m2[1:22, 1:16] = COCO_IDS.index(3) + 1  # car
    m2[4:6, 2:9] = COCO_IDS.index(18) + 1  # dog, over the car
    return {1: m1, 2: m2, 3: np.zeros((H1, W2), np.uint8)}


def rect(x0, y0, x1, y1) -> list[float]:
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def make_coco(root: Path) -> Path:
    base = root / "COCO2014"
    rng = np.random.default_rng(0)
    for n, (h, w) in {1: (H1, W1), 2: (H2, W2), 3: (H1, W2)}.items():
        write_jpeg(base / SPLIT / f"{stem(n)}.jpg", rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    crowd = np.zeros((H1, W1), bool)
    crowd[5:25, 15:35] = True
    bottle = np.zeros((H1, W1), bool)
    bottle[0:4, 38:41] = True
    cats = [{"id": c, "name": f"c{c}", "supercategory": "x"} for c in COCO_IDS]
    rng.shuffle(cats)  # the class index comes from ascending ids, not from the JSON's order
    images = [
        {"id": n, "file_name": f"{stem(n)}.jpg", "height": h, "width": w}
        for n, (h, w) in {1: (H1, W1), 2: (H2, W2), 3: (H1, W2), 4: (H2, W2)}.items()
    ]
    anns = [
        {
            "id": 10,
            "image_id": 1,
            "category_id": 1,
            "iscrowd": 0,
            "segmentation": [rect(10.3, 2.4, 19.6, 8.6), rect(3, 12, 8, 20)],
        },
        {
            "id": 11,
            "image_id": 1,
            "category_id": 90,
            "iscrowd": 1,
            "segmentation": {"counts": rle_encode(crowd), "size": [H1, W1]},
        },
        {
            "id": 12,
            "image_id": 1,
            "category_id": 44,
            "iscrowd": 0,
            "segmentation": {"counts": rle_to_string(rle_encode(bottle)), "size": [H1, W1]},
        },
        {"id": 20, "image_id": 2, "category_id": 3, "iscrowd": 0, "segmentation": [rect(1, 1, 16, 22)]},
        {"id": 21, "image_id": 2, "category_id": 18, "iscrowd": 0, "segmentation": [rect(2, 4, 9, 6)]},
        {"id": 99, "image_id": 777, "category_id": 1, "iscrowd": 0, "segmentation": [rect(0, 0, 2, 2)]},
    ]
    ann_dir = base / "annotations"
    ann_dir.mkdir(parents=True, exist_ok=True)
    (ann_dir / f"instances_{SPLIT}.json").write_text(
        json.dumps({"images": images, "annotations": anns, "categories": cats})
    )
    return base


def read(path) -> np.ndarray:
    with Image.open(path) as img:
        assert img.mode == "L"
        return np.asarray(img)


def test_the_transcribed_encoder_round_trips_through_the_decoder():
    rng = np.random.default_rng(1)
    for h, w in ((7, 11), (40, 3), (1, 1), (64, 50)):
        mask = rng.random((h, w)) < rng.random()
        cnts = rle_encode(mask)
        np.testing.assert_array_equal(rle_decode(cnts, h, w), mask)
        assert counts_from_string(rle_to_string(cnts)) == cnts
        seg = {"counts": rle_to_string(cnts), "size": [h, w]}
        np.testing.assert_array_equal(annotation_mask(seg, h, w), mask)
    big = [5, 100_000, 3, 70_000, 1]  # counts of several characters, and negative differences
    assert counts_from_string(rle_to_string(big)) == big
    assert counts_from_string("") == []
    with pytest.raises(ValueError):
        counts_from_string("0`")  # a continuation bit on the last character


def test_polygons_rasterise_as_maskapi_rlefrpoly():
    rng = np.random.default_rng(2)
    h, w = 31, 23
    polys = [rect(10.3, 2.4, 19.6, 8.6), [3, 3, 3, 3, 9, 3, 9, 3, 9, 12], [-4.2, 5, 30, -3, 12.7, 40]]
    polys += [list(rng.uniform(-3, 35, size=2 * rng.integers(3, 12))) for _ in range(40)]
    polys += [list(np.round(rng.uniform(0, 25, size=2 * rng.integers(3, 8)) * 2) / 2) for _ in range(20)]
    for xy in polys:
        want = rle_decode(rle_fr_poly(xy, h, w), h, w)
        np.testing.assert_array_equal(polygon_mask(xy, h, w), want, err_msg=str(xy))
    # the pixel-centre rule on a box with integer corners: columns 2..5, rows 3..7
    square = np.zeros((h, w), bool)
    square[3:8, 2:6] = True
    np.testing.assert_array_equal(annotation_mask([[2, 3, 6, 3, 6, 8, 2, 8]], h, w), square)
    box = [[2, 3, 4, 5]]  # frPyObjects: a first entry of 4 numbers is a box [x, y, w, h]
    np.testing.assert_array_equal(annotation_mask(box, h, w), square)


def test_instances_to_hsnet_masks_pixel_exact(tmp_path):
    base = make_coco(tmp_path)
    summary = prepare(coco=str(tmp_path))
    assert (summary["inputs"], summary["written"], summary["conflicts"]) == (4, 3, 0)
    assert summary["out"] == str(base) and summary["split"] == SPLIT
    bad = {(b["reason"], Path(b["file"]).name) for b in summary["bad"]}
    assert bad == {("unknown_image", f"instances_{SPLIT}.json"), ("missing_file", f"{stem(4)}.jpg")}
    assert summary["bad_inputs"] == 2
    out_dir = base / "annotations" / SPLIT
    assert sorted(p.name for p in out_dir.iterdir()) == [f"{stem(n)}.png" for n in (1, 2, 3)]
    for n, want in expected_masks().items():
        np.testing.assert_array_equal(read(out_dir / f"{stem(n)}.png"), want, err_msg=stem(n))


def test_another_out_links_the_images_and_reruns_write_nothing(tmp_path):
    base = make_coco(tmp_path / "src")
    summary = prepare(coco=str(base), out=str(tmp_path / "hsn"))
    out = tmp_path / "hsn" / "COCO2014"
    assert summary["out"] == str(out) and summary["written"] == 6  # 3 masks + 3 images
    for n in (1, 2, 3):
        img = out / SPLIT / f"{stem(n)}.jpg"
        assert img.read_bytes() == (base / SPLIT / f"{stem(n)}.jpg").read_bytes()
        assert os.path.samefile(img, base / SPLIT / f"{stem(n)}.jpg")  # a hard link on one file system
    masks = sorted((out / "annotations" / SPLIT).glob("*.png"))
    stamps = [m.stat().st_mtime_ns for m in masks]
    again = prepare(coco=str(base), out=str(tmp_path / "hsn"))
    assert (again["written"], again["skipped_same"], again["conflicts"]) == (0, 6, 0)
    assert [m.stat().st_mtime_ns for m in masks] == stamps

    other = np.full((H1, W1), 7, np.uint8)
    write_label_png(masks[0], other)  # a different mask under an output's name
    (out / SPLIT / f"{stem(2)}.jpg").unlink()
    (out / SPLIT / f"{stem(2)}.jpg").write_bytes(b"another picture")
    third = prepare(coco=str(base), out=str(tmp_path / "hsn"))
    assert (third["written"], third["skipped_same"], third["conflicts"]) == (0, 4, 2)
    assert sorted(third["conflict_files"]) == sorted([str(masks[0]), str(out / SPLIT / f"{stem(2)}.jpg")])
    np.testing.assert_array_equal(read(masks[0]), other)  # never replaced
    assert (out / SPLIT / f"{stem(2)}.jpg").read_bytes() == b"another picture"


def test_undecodable_annotations_are_listed_not_raised(tmp_path):
    base = make_coco(tmp_path)
    ann_file = base / "annotations" / f"instances_{SPLIT}.json"
    data = json.loads(ann_file.read_text())
    data["annotations"][3]["category_id"] = 12  # not one of the 80
    data["annotations"][1]["segmentation"]["size"] = [H1, W1 + 1]  # an RLE of another size
    ann_file.write_text(json.dumps(data))
    summary = prepare(coco=str(base))
    bad = {Path(b["file"]).name: (b["reason"], b.get("detail", "")) for b in summary["bad"]}
    assert bad[f"{stem(1)}.jpg"][0] == bad[f"{stem(2)}.jpg"][0] == "bad_annotation"
    assert "annotation 11" in bad[f"{stem(1)}.jpg"][1] and "category_id 12" in bad[f"{stem(2)}.jpg"][1]
    assert summary["written"] == 1  # image 3 only
    with pytest.raises(FileNotFoundError, match=r"instances_train2014\.json"):
        prepare(coco=str(base), split="train2014")
    data["categories"] = data["categories"][:79]
    ann_file.write_text(json.dumps(data))
    with pytest.raises(InputError, match="79 categories"):
        prepare(coco=str(base))


def write_fold_pickles(folder: Path) -> dict[tuple[str, int], dict[int, list[str]]]:
    """HSNet's ``splits/coco/{trn,val}/fold{i}.pkl``: class id -> names, keys in ascending order with some
    classes empty, as pickle protocol 3 writes them."""
    folds = {}
    for s, prefix in (("trn", "train2014"), ("val", "val2014")):
        for i in range(4):
            data = {
                c: [f"{prefix}/COCO_{prefix}_{(c * 7 + k) % 50:012d}.jpg" for k in (3, 1, 2)][: c % 3]
                for c in range(80)
            }
            folds[s, i] = data
            (folder / s).mkdir(parents=True, exist_ok=True)
            (folder / s / f"fold{i}.pkl").write_bytes(pickle.dumps(data, protocol=3))
    return folds


def test_fold_pickles_become_text_lists(tmp_path):
    base = make_coco(tmp_path)
    splits = tmp_path / "fewshot_data" / "data" / "splits" / "coco"
    folds = write_fold_pickles(splits)
    summary = prepare(coco=str(base), splits=str(tmp_path / "fewshot_data"))
    assert summary["inputs"] == 8 + 4 and summary["written"] == 8 + 3
    for (s, i), data in folds.items():
        lines = (base / "splits" / s / f"fold{i}.txt").read_text().splitlines()
        assert lines == [f"{c}\t{n}" for c in sorted(data) for n in data[c]]
    assert (base / "splits" / "val" / "fold0.txt").read_text().splitlines()[0] == (
        "1\tval2014/COCO_val2014_000000000010.jpg"
    )
    (splits / "trn" / "fold3.pkl").unlink()
    again = prepare(coco=str(base), splits=str(splits))
    assert (again["written"], again["skipped_same"], again["conflicts"]) == (0, 7 + 3, 0)
    missing = {(b["reason"], b["file"]) for b in again["bad"]}
    assert ("missing_file", str(splits / "trn" / "fold3.pkl")) in missing


class _Payload:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return os.system, (f"touch {self.target}",)


def test_a_pickle_with_a_payload_is_refused_and_runs_nothing(tmp_path):
    base = make_coco(tmp_path)
    splits = tmp_path / "splits" / "coco"
    write_fold_pickles(splits)
    marker = tmp_path / "pwned"
    (splits / "val" / "fold2.pkl").write_bytes(pickle.dumps({0: [_Payload(marker)]}, protocol=2))
    with pytest.raises(InputError, match=r"system.*refused"):
        prepare(coco=str(base), splits=str(tmp_path / "splits"))
    assert not marker.exists()
    assert not (base / "splits").exists() and not (base / "annotations" / SPLIT).exists()  # nothing written
    (splits / "val" / "fold2.pkl").write_bytes(pickle.dumps({"0": ["val2014/x.jpg"]}))  # data, wrong shape
    with pytest.raises(InputError, match="class id '0'"):
        prepare(coco=str(base), splits=str(splits))


def test_the_cli_refuses_the_payload_with_exit_code_4(tmp_path, capsys):
    from lseg_pacl.commands.cli import main

    base = make_coco(tmp_path)
    write_fold_pickles(tmp_path / "coco")
    marker = tmp_path / "pwned"
    (tmp_path / "coco" / "trn" / "fold0.pkl").write_bytes(pickle.dumps({0: [_Payload(marker)]}))
    assert main(["data", "prepare", "coco20i", f"coco={base}", f"splits={tmp_path / 'coco'}"]) == 4
    err = capsys.readouterr().err
    assert "refused" in err and "system" in err and "Traceback" not in err
    assert not marker.exists()
    assert main(["data", "prepare", "coco20i", f"coco={base}", "split=test2015"]) == 2
