"""``lseg-pacl predict``: pictures, label maps and embeddings for your own images and words."""

import json

import numpy as np
import pytest
from PIL import Image
from safetensors import safe_open
from support.layouts import truncate, write_jpeg

from lseg_pacl.commands.cli import main
from lseg_pacl.commands.predict import parse_labels
from lseg_pacl.errors import ConfigError
from lseg_pacl.evaluation.pictures import palette

LABELS = "sky, grass , ball"


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    write_jpeg(folder / "a.jpg", rng.integers(0, 255, (50, 70, 3), dtype=np.uint8))
    write_jpeg(folder / "b.jpg", rng.integers(0, 255, (64, 40, 3), dtype=np.uint8))
    return folder


def run(folder, out, *extra):
    return main(["predict", "ckpt=demo_clip", f"image={folder}", f"labels={LABELS}", f"out={out}",
                 "logger.wandb.mode=disabled", *extra])


@pytest.mark.slow
def test_outputs_have_the_input_size_and_index_the_labels(images, tmp_path):
    out = tmp_path / "out"
    assert run(images, out, "embeddings=true") == 0
    for stem, size in (("a", (50, 70)), ("b", (64, 40))):
        with Image.open(out / f"{stem}_labels.png") as img:
            assert img.mode == "P" and img.size == (size[1], size[0])
            ids = np.asarray(img)
        assert ids.max() < 3
        summary = json.loads((out / f"{stem}.json").read_text())
        assert summary["labels"] == ["sky", "grass", "ball"] and summary["size"] == list(size)
        assert sum(summary["share"].values()) == pytest.approx(1.0, abs=1e-4)
        with Image.open(out / f"{stem}_overlay.png") as img:
            overlay = np.asarray(img.convert("RGB"))
        colours = palette(3)
        present = np.unique(ids)
        below = overlay[overlay.shape[0] * 3 // 4:]  # the legend sits under the (upscaled) picture
        assert all((below == colours[i]).all(-1).any() for i in present)
        with safe_open(out / f"{stem}_embeddings.safetensors", "pt") as f:
            emb = f.get_tensor("embeddings")
            gh, gw = map(int, f.metadata()["grid"].split(","))
        assert emb.shape[:2] == (gh, gw) and emb.norm(dim=-1).sub(1).abs().max() < 1e-4


def test_labels_are_stripped_and_deduplicated():
    assert parse_labels(" cat, dog ,Cat,, ") == ("cat", "dog")
    with pytest.raises(ConfigError, match="at least one label"):
        parse_labels(" , ")


@pytest.mark.slow
def test_a_broken_file_is_reported_and_the_others_done(images, tmp_path, capsys):
    (images / "notes.txt").write_text("not a picture")
    truncate(images / "b.jpg", 0.3)
    out = tmp_path / "out"
    assert run(images, out) == 0
    err = capsys.readouterr().err
    assert "notes.txt" in err and "b.jpg" in err
    assert (out / "a_overlay.png").is_file() and not (out / "b_overlay.png").exists()


@pytest.mark.slow
def test_nothing_is_overwritten_by_default(images, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "a_overlay.png").write_text("mine")
    assert run(images, out) == 0
    assert (out / "a_overlay.png").read_text() == "mine" and (out / "b_overlay.png").is_file()
    assert "overwrite=true" in capsys.readouterr().err
    assert run(images, out, "overwrite=true") == 0
    assert (out / "a_overlay.png").read_bytes()[:4] == b"\x89PNG"


def test_missing_arguments_and_inputs_are_clear(tmp_path, capsys):
    assert main(["predict", "ckpt=demo_clip", f"image={tmp_path}"]) == 2
    assert "labels=" in capsys.readouterr().err
    assert main(["predict", "ckpt=nope.ckpt", f"image={tmp_path}", "labels=cat"]) == 3


@pytest.mark.slow
@pytest.mark.parametrize("model", [["ckpt=lseg_demo_seg", "model.clip.pretrained=null"],
                                   ["ckpt=demo_clip", "model.clip.last_block=sclip"]])
def test_lseg_and_the_baselines_predict_too(images, tmp_path, model):
    out = tmp_path / "out"
    assert main(["predict", *model, f"image={images / 'a.jpg'}", "labels=sky, grass", f"out={out}",
                 "embeddings=true"]) == 0
    with Image.open(out / "a_labels.png") as img:
        assert img.size == (70, 50)
    with safe_open(out / "a_embeddings.safetensors", "pt") as f:
        assert f.get_tensor("embeddings").ndim == 3


@pytest.mark.slow
def test_inputs_sharing_a_stem_keep_apart(images, tmp_path):
    Image.open(images / "a.jpg").save(images / "a.png")
    out = tmp_path / "out"
    assert run(images, out) == 0
    assert (out / "a.jpg_overlay.png").is_file() and (out / "a.png_overlay.png").is_file()
    assert (out / "b_overlay.png").is_file()


# ---- backend=onnx (lseg_pacl/export/): the same outputs from an export run by ONNX Runtime
WORLD_LABELS = "sky, grass, ball, tree, water"


@pytest.mark.slow
@pytest.mark.parametrize("model", [["ckpt=demo_clip"], ["ckpt=demo_clip", "model.clip.last_block=naclip"],
                                   ["ckpt=lseg_demo_seg", "model.lseg.spatial_reg=depthwise"]],
                         ids=["clip", "naclip", "lseg_spatial"])
def test_onnx_backend_writes_the_label_maps_pytorch_writes(world, tiny_clip_file, tmp_path, model):
    pytest.importorskip("onnxruntime")
    import torch

    images = world / "coco" / "val2017"
    weights = f"model.clip.pretrained={tiny_clip_file}"
    torch.manual_seed(0)  # LSeg's DPT is random: the same seed builds the same one twice
    assert main(["export", *model, weights, "format=onnx", f"labels={WORLD_LABELS}",
                 f"out={tmp_path / 'export'}"]) == 0
    torch.manual_seed(0)
    assert main(["predict", *model, weights, f"image={images}", f"labels={WORLD_LABELS}",
                 f"out={tmp_path / 'torch'}", "embeddings=true"]) == 0
    assert main(["predict", "backend=onnx", f"export={tmp_path / 'export'}", f"image={images}",
                 f"out={tmp_path / 'onnx'}", "embeddings=true"]) == 0
    stems = sorted(p.stem for p in images.iterdir())
    assert stems
    for stem in stems:
        with Image.open(tmp_path / "torch" / f"{stem}_labels.png") as a, \
                Image.open(tmp_path / "onnx" / f"{stem}_labels.png") as b:
            assert np.array_equal(np.asarray(a), np.asarray(b)), stem
        for name in (f"{stem}.json",):
            want = json.loads((tmp_path / "torch" / name).read_text())
            assert json.loads((tmp_path / "onnx" / name).read_text()) == want
        with safe_open(tmp_path / "torch" / f"{stem}_embeddings.safetensors", "pt") as a, \
                safe_open(tmp_path / "onnx" / f"{stem}_embeddings.safetensors", "pt") as b:
            assert a.metadata() == b.metadata()
            torch.testing.assert_close(b.get_tensor("embeddings"), a.get_tensor("embeddings"), rtol=0,
                                       atol=1e-4)


@pytest.mark.slow
def test_onnx_backend_takes_the_exports_labels_only(world, tiny_clip_file, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    images = world / "coco" / "val2017"
    export = tmp_path / "export"
    assert main(["export", "ckpt=demo_clip", f"model.clip.pretrained={tiny_clip_file}",
                 f"labels={WORLD_LABELS}", f"out={export}"]) == 0
    capsys.readouterr()
    base = ["predict", "backend=onnx", f"export={export}", f"image={images}", f"out={tmp_path / 'o'}"]
    assert main([*base, "labels=sky, grass"]) == 2
    assert "the export's labels (sky, grass, ball, tree, water)" in capsys.readouterr().err
    assert main([*base, "model.clip.last_block=sclip"]) == 2
    assert main([*base, f"labels={WORLD_LABELS}", "mode=slide", "crop=32", "stride=16", "limit=1"]) == 0
    assert main(["predict", "backend=onnx", f"image={images}"]) == 2
    assert "export=" in capsys.readouterr().err
