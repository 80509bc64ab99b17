"""``data prepare pascal5i``: VOC2012 palette PNGs (255 boundaries) and SBD ``cls/<id>.mat`` files (a
``GTcls`` struct written here with scipy.io.savemat in SBD's layout) -> HSNet's
``VOC2012/SegmentationClassAug/<id>.png``, VOC's mask preferred, pixel-exact; atomic, resumable, never
overwriting a different file; missing inputs listed."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import scipy.sparse
from PIL import Image
from support.layouts import write_jpeg, write_label_png

from data_modules.prepare import PREPARERS, pascal5i
from data_modules.prepare.pascal5i import read_fold_lists, read_sbd_segmentation

prepare = PREPARERS["pascal5i"].run
MIRROR = Path("/work/.mirror/isl-org+lang-seg/repo")  # the official lang-seg repository, where present
SIZE = (22, 31)  # (H, W), non-square


def voc_mask(seed: int, size=SIZE) -> np.ndarray:
    """Class ids 0..20 in vertical bands, a 1-px 255 line on each band's edge (VOC's object outlines)."""
    rng = np.random.default_rng(seed)
    h, w = size
    classes = rng.choice(np.arange(1, 21), size=3, replace=False)
    cuts = sorted(rng.choice(np.arange(3, w - 3), size=3, replace=False))
    mask = np.zeros(size, np.uint8)
    for c, (a, b) in zip(classes, zip(cuts, [*cuts[1:], w], strict=False), strict=True):
        mask[:, a:b] = c
        mask[:, a] = 255
    mask[0, :] = 0
    return mask


def sbd_mask(seed: int, size=SIZE) -> np.ndarray:
    rng = np.random.default_rng(100 + seed)
    mask = np.zeros(size, np.uint8)
    mask[2:-3, 4:-6] = rng.integers(1, 21)
    mask[5:9, 1:20] = rng.integers(1, 21)
    return mask


def write_sbd_mat(path: Path, seg: np.ndarray) -> None:
    """SBD's ``cls/<id>.mat``: a 1 x 1 struct ``GTcls`` with ``Segmentation`` (uint8), ``Boundaries`` (a
    20 x 1 cell of sparse logical matrices) and ``CategoriesPresent``."""
    boundaries = np.empty((20, 1), dtype=object)
    for k in range(20):
        boundaries[k, 0] = scipy.sparse.csc_matrix(seg == k + 1, dtype=bool)
    present = np.unique(seg[seg > 0]).astype(np.uint8).reshape(-1, 1)
    gt = {"Segmentation": seg, "Boundaries": boundaries, "CategoriesPresent": present}
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, {"GTcls": gt}, do_compression=True)


def write_lists(folder: Path, pairs: dict[str, list[str]]) -> Path:
    """``{trn,val}/fold{0..3}.txt`` with ``<img>__<cls>`` lines; ``pairs`` maps "val/fold0" -> lines."""
    for s in ("trn", "val"):
        for i in range(4):
            path = folder / s / f"fold{i}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(f"{line}\n" for line in pairs.get(f"{s}/fold{i}", [])))
    return folder


def rgb(seed: int, size=SIZE) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (*size, 3), dtype=np.uint8)


class Release:
    """VOC2012 + SBD in tmp_path, and the masks the converter must write."""

    def __init__(self, root: Path) -> None:
        self.voc = root / "VOCdevkit" / "VOC2012"
        self.sbd = root / "benchmark_RELEASE" / "dataset"
        self.want: dict[str, np.ndarray] = {}
        # a: VOC only; b: VOC and SBD (VOC wins); c: SBD only; d: SBD only, image only in SBD's img/
        for n, file_id in enumerate(["2007_000033", "2008_000002", "2008_000010", "2009_000020"]):
            if file_id != "2009_000020":
                write_jpeg(self.voc / "JPEGImages" / f"{file_id}.jpg", rgb(n))
            else:
                write_jpeg(self.sbd / "img" / f"{file_id}.jpg", rgb(n))
            if file_id in ("2007_000033", "2008_000002"):
                self.want[file_id] = voc_mask(n)
                write_label_png(self.voc / "SegmentationClass" / f"{file_id}.png", voc_mask(n), mode="P")
            if file_id != "2007_000033":
                write_sbd_mat(self.sbd / "cls" / f"{file_id}.mat", sbd_mask(n))
                self.want.setdefault(file_id, sbd_mask(n))
        # e: an image with no mask anywhere; f: a VOC mask without its image
        write_jpeg(self.voc / "JPEGImages" / "2010_000001.jpg", rgb(9))
        write_label_png(self.voc / "SegmentationClass" / "2011_000005.png", voc_mask(5), mode="P")
        self.lists = write_lists(
            root / "lists",
            {
                "val/fold0": ["2007_000033__01", "2007_000033__04", "2008_000002__02"],
                "val/fold3": ["2011_000005__17"],
                "trn/fold1": ["2008_000010__01", "2009_000020__03", "2010_000001__07", "2008_000002__05"],
            },
        )


def read(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        assert img.mode == "L" and img.format == "PNG"
        return np.asarray(img)


def test_sbd_mat_reads_back_as_sbd_does(tmp_path):
    seg = sbd_mask(0)
    write_sbd_mat(tmp_path / "x.mat", seg)
    mat = scipy.io.loadmat(tmp_path / "x.mat")  # SBD's struct: a 1 x 1 record array, fields 1 x 1 wrapped
    assert mat["GTcls"].shape == (1, 1) and mat["GTcls"].dtype.names == (
        "Segmentation",
        "Boundaries",
        "CategoriesPresent",
    )
    assert mat["GTcls"][0, 0]["Boundaries"].shape == (20, 1)
    got = read_sbd_segmentation(tmp_path / "x.mat")
    assert got.dtype == np.uint8 and got.shape == SIZE
    np.testing.assert_array_equal(got, seg)
    one_row = np.array([[0, 3, 3, 0]], np.uint8)  # not squeezed to 1-D
    write_sbd_mat(tmp_path / "y.mat", one_row)
    assert read_sbd_segmentation(tmp_path / "y.mat").shape == (1, 4)


def test_voc_preferred_over_sbd_pixel_exact(tmp_path):
    rel = Release(tmp_path)
    summary = prepare(
        voc=str(tmp_path / "VOCdevkit"),
        sbd=str(tmp_path / "benchmark_RELEASE"),
        out=str(tmp_path / "hsn"),
        lists=str(rel.lists),
    )
    out = tmp_path / "hsn" / "VOC2012"
    assert summary["out"] == str(out) and summary["inputs"] == 6
    # 4 masks + 4 images
    assert (summary["written"], summary["conflicts"], summary["bad_inputs"]) == (8, 0, 2)
    assert {(b["reason"], Path(b["file"]).name) for b in summary["bad"]} == {
        ("missing_mask", "2010_000001"),
        ("missing_file", "2011_000005.jpg"),
    }
    assert "no sbd" not in summary["bad"][0].get("detail", "")
    assert sorted(p.stem for p in (out / "SegmentationClassAug").iterdir()) == sorted(rel.want)
    for file_id, want in rel.want.items():
        got = read(out / "SegmentationClassAug" / f"{file_id}.png")
        np.testing.assert_array_equal(got, want, err_msg=file_id)
        image = out / "JPEGImages" / f"{file_id}.jpg"
        src = rel.sbd / "img" if file_id == "2009_000020" else rel.voc / "JPEGImages"
        assert os.path.samefile(image, src / f"{file_id}.jpg")  # hard-linked
    # VOC's mask with its boundaries, not SBD's
    assert 255 in read(out / "SegmentationClassAug" / "2008_000002.png")
    assert not (rel.voc / "SegmentationClassAug").exists()

    linked = out / "JPEGImages" / "2008_000010.jpg"
    linked.unlink()
    linked.write_bytes(b"another picture")  # a different image under an output's name
    (out / "JPEGImages" / "2007_000033.jpg").unlink()
    copy = (rel.voc / "JPEGImages" / "2007_000033.jpg").read_bytes()
    (out / "JPEGImages" / "2007_000033.jpg").write_bytes(copy)  # a copy, not a link: the same file
    again = prepare(voc=str(rel.voc), sbd=str(rel.sbd), out=str(out), lists=str(rel.lists))
    assert (again["written"], again["skipped_same"], again["conflicts"]) == (0, 7, 1)
    assert again["conflict_files"] == [str(linked)] and linked.read_bytes() == b"another picture"


def test_in_place_resume_and_conflicts(tmp_path):
    rel = Release(tmp_path)
    first = prepare(voc=str(rel.voc), sbd=str(tmp_path), lists=str(rel.lists))
    assert first["out"] == str(rel.voc) and first["written"] == 4 + 1  # the SBD-only image linked into VOC
    assert os.path.samefile(rel.voc / "JPEGImages" / "2009_000020.jpg", rel.sbd / "img" / "2009_000020.jpg")
    outs = sorted((rel.voc / "SegmentationClassAug").glob("*.png"))
    stamps = [p.stat().st_mtime_ns for p in outs]
    again = prepare(voc=str(rel.voc), sbd=str(tmp_path), lists=str(rel.lists))
    # the linked image is VOC's now: nothing to link
    assert (again["written"], again["skipped_same"], again["conflicts"]) == (0, 4, 0)
    assert [p.stat().st_mtime_ns for p in outs] == stamps

    different = np.full(SIZE, 3, np.uint8)
    write_label_png(outs[1], different)  # another mask under an output's name
    Image.fromarray(read(outs[2])).save(outs[2], "PNG", compress_level=0)  # same pixels, other bytes
    outs[3].unlink()  # an interrupted run
    third = prepare(voc=str(rel.voc), sbd=str(tmp_path), lists=str(rel.lists))
    assert (third["written"], third["skipped_same"], third["conflicts"]) == (1, 2, 1)
    assert third["conflict_files"] == [str(outs[1])]
    np.testing.assert_array_equal(read(outs[1]), different)  # never replaced


def test_all_ids_missing_sbd_and_bad_masks(tmp_path):
    rel = Release(tmp_path)
    write_label_png(rel.voc / "SegmentationClass" / "2008_000002.png", np.full(SIZE, 21, np.uint8), mode="P")
    write_sbd_mat(rel.sbd / "cls" / "2008_000010.mat", np.zeros((SIZE[0] + 1, SIZE[1]), np.uint8))  # size
    (rel.sbd / "cls" / "2009_000020.mat").write_bytes(b"MATLAB 7.3 MAT-file, not really")
    summary = prepare(voc=str(rel.voc), sbd=str(rel.sbd), ids="all", out=str(tmp_path / "hsn" / "VOC2012"))
    assert summary["inputs"] == 5 and summary["written"] == 2  # 2007_000033: its mask and its image
    reasons = {Path(b["file"]).name: b["reason"] for b in summary["bad"]}
    assert reasons == {
        "2008_000002.png": "label_out_of_range",
        "2008_000010.mat": "size_mismatch",
        "2009_000020.mat": "bad_mask",
        "2011_000005.jpg": "missing_file",
    }
    no_sbd = prepare(voc=str(rel.voc), lists=str(rel.lists), out=str(tmp_path / "other"))
    no_mask = {b["file"] for b in no_sbd["bad"] if b["reason"] == "missing_mask"}
    assert no_mask == {"2008_000010", "2010_000001"}
    assert all("no sbd=" in b["detail"] for b in no_sbd["bad"] if b["reason"] == "missing_mask")
    # SBD's image is not looked for without sbd=
    no_image = {Path(b["file"]).name for b in no_sbd["bad"] if b["reason"] == "missing_file"}
    assert no_image == {"2009_000020.jpg", "2011_000005.jpg"}


def test_missing_sources_and_lists_are_explained(tmp_path, monkeypatch):
    rel = Release(tmp_path)
    with pytest.raises(FileNotFoundError, match="SegmentationClass"):
        prepare(voc=str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="cls"):
        prepare(voc=str(rel.voc), sbd=str(tmp_path / "nowhere"))
    monkeypatch.setattr(pascal5i, "LISTS", tmp_path / "not_shipped")
    with pytest.raises(FileNotFoundError, match=r"lists missing \(the lists the project ships.*lists=DIR"):
        prepare(voc=str(rel.voc))
    (rel.lists / "trn" / "fold2.txt").write_text("2008_000010__21\n")
    with pytest.raises(ValueError, match="cls 1..20"):
        read_fold_lists(rel.lists)
    with pytest.raises(ValueError, match="ids=lists"):
        prepare(voc=str(rel.voc), ids="some")


def test_the_cli_reaches_the_converter(tmp_path, capsys):
    from lseg_pacl.commands.cli import main

    rel = Release(tmp_path)
    argv = ["data", "prepare", "pascal5i", f"voc={rel.voc}", f"sbd={rel.sbd}", f"lists={rel.lists}"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["dataset"] == "pascal5i" and summary["written"] == 5
    write_label_png(rel.voc / "SegmentationClassAug" / "2007_000033.png", np.zeros(SIZE, np.uint8))
    assert main(argv) == 4  # a different file left alone: said so
    assert json.loads(capsys.readouterr().out)["conflicts"] == 1
    assert main(["data", "prepare", "pascal5i", f"sbd={rel.sbd}"]) == 2  # voc= missing
    assert "voc=DIR" in capsys.readouterr().err


def _official_lists(tmp_path: Path) -> Path:
    """The PASCAL-5i lists: the project's (once shipped), else the official lang-seg mirror's."""
    if (pascal5i.LISTS / "val" / "fold0.txt").is_file():
        return pascal5i.LISTS
    if not MIRROR.is_dir():
        pytest.skip("neither the shipped PASCAL-5i lists nor the lang-seg mirror is here")
    folder = tmp_path / "pascal"
    for s in ("trn", "val"):
        for i in range(4):
            rev = f"HEAD:fewshot_data/data/splits/pascal/{s}/fold{i}.txt"
            cmd = ["git", "-C", str(MIRROR), "show", rev]
            text = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            (folder / s).mkdir(parents=True, exist_ok=True)
            (folder / s / f"fold{i}.txt").write_text(text)
    return folder


def test_the_official_lists_name_11473_images(tmp_path):
    folder = _official_lists(tmp_path)
    ids = read_fold_lists(folder)
    assert len(ids) == 11473 and ids == sorted(set(ids))
    val_lines = [(folder / "val" / f"fold{i}.txt").read_text().split() for i in range(4)]
    val = {line.split("__")[0] for lines in val_lines for line in lines}
    assert len(val) == 1381 and {"2007_000033", "2011_003256"} <= val
    assert [len(lines) for lines in val_lines] == [346, 451, 725, 346]
