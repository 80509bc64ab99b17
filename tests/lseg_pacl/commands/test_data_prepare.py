"""``lseg-pacl data prepare NAME ...`` and the other data actions on the four newer benchmarks, through the
CLI."""

from __future__ import annotations

import json
import os

import pytest
from support.layouts import make_ade20k_full_release, make_coco_stuff, make_pascal_context_mats

from data_modules.prepare.pc459 import val_ids
from lseg_pacl.commands.cli import main


@pytest.mark.parametrize(("name", "count"), [("ade847", 847), ("pc459", 459), ("cityscapes", 19),
                                             ("coco_object", 81)])
def test_data_classes_of_the_new_benchmarks(capsys, name, count):
    assert main(["data", "classes", f"dataset={name}"]) == 0
    names = json.loads(capsys.readouterr().out)
    assert len(names) == count
    if name == "ade847":
        assert names[1] == "building, edifice"  # one class, comma and all


def test_prepare_coco_object_then_check_it(tmp_path, capsys):
    make_coco_stuff(tmp_path, n=3, ids=[0, 91, 255])
    assert main(["data", "check", "dataset=coco_object", f"root={tmp_path}"]) == 3
    err = capsys.readouterr().err
    assert "lseg-pacl data prepare coco_object root=DIR" in err and "Traceback" not in err
    assert main(["data", "prepare", "coco_object", f"root={tmp_path}"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert [summary[k] for k in ("written", "skipped_same", "conflicts", "bad_inputs")] == [3, 0, 0, 0]
    assert main(["data", "prepare", "dataset=coco_object", f"root={tmp_path}", "split=val2017"]) == 0
    assert json.loads(capsys.readouterr().out)["skipped_same"] == 3
    assert main(["data", "check", "dataset=coco_object", f"root={tmp_path}"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["pairs_ok"] == 3 and set(report["label_hist"]) == {"0", "1"}


def test_prepare_never_overwrites_a_different_file_and_says_so(tmp_path, capsys):
    make_coco_stuff(tmp_path, n=2, ids=[0, 91, 255])
    mine = sorted((tmp_path / "coco_stuff164k" / "annotations" / "val2017").glob("*.png"))[0]
    target = mine.with_name(mine.stem + "_instanceTrainIds.png")
    target.write_bytes(b"the user's own file")
    assert main(["data", "prepare", "coco_object", f"root={tmp_path}"]) == 4
    captured = capsys.readouterr()
    assert json.loads(captured.out)["conflicts"] == 1 and "left as they are" in captured.err
    assert target.read_bytes() == b"the user's own file"


def test_prepare_pc459_through_the_cli(tmp_path, capsys):
    make_pascal_context_mats(tmp_path / "src", val_ids()[:2])
    out = tmp_path / "data"
    assert main(["data", "prepare", "pc459", f"src={tmp_path / 'src'}", f"root={out}"]) == 0
    assert json.loads(capsys.readouterr().out)["written"] == 4
    assert main(["data", "check", "dataset=pc459", f"root={out}"]) == 0
    assert json.loads(capsys.readouterr().out)["pairs_ok"] == 2


class _Payload:
    def __init__(self, marker) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_prepare_refuses_an_index_that_runs_code(tmp_path, capsys):
    marker = tmp_path / "ran"
    index = {"folder": ["ADE20K_2021_17_01/x"], "filename": ["ADE_val_00000001.jpg"], "x": _Payload(marker)}
    release = make_ade20k_full_release(tmp_path, [("ADE_val_00000001.jpg", (8, 8), (2978,))], index=index)
    assert main(["data", "prepare", "ade847", f"src={release}"]) == 4
    err = capsys.readouterr().err
    assert "refused" in err and "system" in err and "Traceback" not in err
    assert not marker.exists()


def test_prepare_names_what_is_wrong(tmp_path, capsys):
    assert main(["data", "prepare"]) == 2
    err = capsys.readouterr().err
    assert "coco_object, ade847, pc459" in err and "lseg-pacl data prepare ade847 src=" in err
    assert main(["data", "prepare", "voc21", "root=x"]) == 2
    assert "got 'voc21'" in capsys.readouterr().err
    assert main(["data", "prepare", "ade847", f"root={tmp_path}"]) == 2
    assert "needs src=DIR" in capsys.readouterr().err
    assert main(["data", "prepare", "coco_object", f"root={tmp_path}", "colour=red"]) == 2
    assert main(["data", "prepare", "coco_object", f"root={tmp_path}"]) == 3
    assert "annotations/val2017/<stem>.png" in capsys.readouterr().err
    assert main(["data", "prepare", "ade847", f"src={tmp_path}"]) == 3
    assert "index_ade20k.pkl" in capsys.readouterr().err
