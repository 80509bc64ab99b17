"""``lseg-pacl export``: the command's words, its files and its errors (the export itself:
tests/lseg_pacl/export/)."""

import json
import sys

import pytest

from lseg_pacl.commands.cli import main


def test_export_writes_the_model_labels_and_metadata(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "e"
    assert main(["export", "ckpt=demo_clip", "format=onnx", "labels=cat, dog", f"out={out}", "opset=17",
                 "mode=slide"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["image_model.onnx", "labels.npy", "metadata.json"]
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["labels"]["names"] == ["cat", "dog"] and meta["protocol"]["mode"] == "slide"
    assert meta["output"]["grid"] == "H/8 x W/8" and meta["logits"]["upsample"]["align_corners"] is False
    assert "max relative error" in capsys.readouterr().out
    assert main(["export", "ckpt=demo_clip", f"out={out}"]) == 2  # other random weights, and no labels
    assert "overwrite=true" in capsys.readouterr().err


def test_bad_words_are_config_errors(tmp_path, capsys):
    assert main(["export", "ckpt=demo_clip"]) == 2
    assert "out=" in capsys.readouterr().err
    assert main(["export", "ckpt=demo_clip", "format=tflite", f"out={tmp_path}"]) == 2
    assert "onnx" in capsys.readouterr().err
    assert main(["export", "ckpt=nope.ckpt", f"out={tmp_path}"]) == 3


def test_missing_onnx_packages_stop_with_the_install_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    monkeypatch.setitem(sys.modules, "onnx", None)
    assert main(["export", "ckpt=demo_clip", f"out={tmp_path / 'e'}"]) == 3
    err = capsys.readouterr().err
    assert "onnx and onnxruntime" in err and 'pip install -e ".[onnx]"' in err
    assert not (tmp_path / "e").exists()
    (tmp_path / "photo.jpg").write_bytes(b"not read: the backend stops first")
    assert main(["predict", "backend=onnx", f"export={tmp_path}", f"image={tmp_path / 'photo.jpg'}"]) == 3
    assert 'onnxruntime, which are not installed: pip install -e ".[onnx]"' in capsys.readouterr().err
