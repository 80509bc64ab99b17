"""ONNX export (lseg_pacl/export/): ONNX Runtime gives PyTorch's embeddings and logits at sizes other than the
traced one, for CLIP, PACL, LSeg and the training-free rows; the rows that cannot export say so; a missing
onnxruntime gives the install command; nothing is overwritten."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lseg_pacl.commands.predict import load_model
from lseg_pacl.errors import ConfigError, MissingInputError
from lseg_pacl.export import export_onnx
from lseg_pacl.export.deps import INSTALL
from lseg_pacl.export.graph import NOT_EXPORTABLE, DenseImageModel, _quantile, spec_of

pytest.importorskip("onnxruntime")

LABELS = "sky, grass, ball"
TINY_SCCLIP = ["eval.method_options.pre_adjust_layer=3", "eval.method_options.post_adjust_layer=2",
               "eval.method_options.multi_layers=[1,2,3]", "eval.method_options.lof_k=10"]
MODELS = {  # the demo's tiny models, random weights (seeded), and training-free rows on the tiny CLIP
    "clip": ("demo_clip", []),
    "pacl": ("demo_pacl", ["model.clip.pretrained=null"]),
    "lseg": ("lseg_demo_seg", ["model.clip.pretrained=null"]),
    "lseg_bottleneck": ("lseg_demo_seg", ["model.clip.pretrained=null", "model.lseg.spatial_reg=bottleneck"]),
    "maskclip": ("demo_clip", ["model.clip.last_block=maskclip"]),
    "sclip": ("demo_clip", ["model.clip.last_block=sclip"]),
    "clearclip": ("demo_clip", ["model.clip.last_block=clearclip"]),
    "naclip": ("demo_clip", ["model.clip.last_block=naclip"]),
    "scclip": ("demo_clip", ["model.clip.last_block=scclip", *TINY_SCCLIP]),
}


def _export(tmp_path, name: str):
    experiment, overrides = MODELS[name]
    torch.manual_seed(0)
    result = export_onnx(experiment, tmp_path / name, LABELS, overrides=overrides)
    torch.manual_seed(0)
    module, _ = load_model(experiment, overrides)  # the same weights again
    return result, module.eval()


def _relative(got: torch.Tensor, want: torch.Tensor) -> float:
    assert got.shape == want.shape
    return float((got - want).abs().max() / want.abs().max())


@pytest.mark.slow
@pytest.mark.parametrize("name", list(MODELS))
def test_onnx_runtime_gives_pytorchs_embeddings_and_logits_at_two_sizes(tmp_path, name):
    from lseg_pacl.export.runtime import OnnxSegmenter

    result, module = _export(tmp_path, name)
    onnx = OnnxSegmenter(result["out"])
    meta = result["metadata"]
    spec = spec_of(module)
    traced = tuple(meta["checks"]["image_model"][0]["size"])
    p = spec.patch
    labels = module.clip.class_embeddings(tuple(LABELS.split(", ")), module.templates)
    np.testing.assert_allclose(onnx.label_embeddings.numpy(), labels.numpy(), rtol=0, atol=1e-6)
    dense = DenseImageModel(module, spec)
    gen = torch.Generator().manual_seed(3)
    for size in ((8 * p, 8 * p), (6 * p, 11 * p)):  # square and non-square, neither the traced size
        assert size != traced
        x = torch.randn(1, 3, *size, generator=gen)
        with torch.no_grad():
            want = dense(x)
            want_logits = module.logits(x, labels, size).float()
        got = onnx.embeddings(x)
        assert got.shape == (1, spec.dim, *module.dense_grid(*size))
        assert _relative(got, want) < 1e-4
        assert got.norm(dim=1).sub(1).abs().max() < 1e-4
        assert _relative(onnx.logits(x, onnx.label_embeddings, size), want_logits) < 1e-4
    if spec.objective != "lseg":  # the dense model is the objective's own dense_embeddings
        with torch.no_grad():
            own = module.dense_embeddings(x) if spec.last_block != "scclip" else None
        if own is not None:
            own = torch.nn.functional.normalize(own, dim=-1)
            assert _relative(got, own.transpose(1, 2).reshape(got.shape)) < 1e-4


def test_metadata_says_how_to_use_the_export(tmp_path):
    torch.manual_seed(0)
    result = export_onnx("lseg_demo_seg", tmp_path / "e", LABELS, opset=17,
                         overrides=["model.clip.pretrained=null"])
    meta = json.loads((tmp_path / "e" / "metadata.json").read_text())
    assert meta == json.loads(json.dumps(result["metadata"]))
    assert meta["opset"] == 17 and meta["project_version"]
    assert meta["input"]["patch"] == 8 and len(meta["input"]["mean"]) == 3
    assert meta["output"]["grid"] == "H/2 x W/2" and meta["output"]["dim"] == 128
    assert meta["labels"]["names"] == ["sky", "grass", "ball"] and meta["labels"]["templates"] == "pacl7"
    assert meta["logits"]["rule"] == "lseg" and meta["logits"]["upsample"]["align_corners"] is True
    assert meta["logits"]["head"] is None and meta["logits"]["scale"] == pytest.approx(14.285714, rel=1e-5)
    assert meta["source"] == {"ckpt": "lseg_demo_seg", "kind": "experiment", "objective": "lseg",
                              "last_block": None, "overrides": ["model.clip.pretrained=null"]}
    assert meta["protocol"]["short_side"] == 64
    assert all(c["max_relative_error"] < 1e-4 for c in meta["checks"]["image_model"])
    labels = np.load(tmp_path / "e" / "labels.npy")
    assert labels.dtype == np.float32 and labels.shape == (3, 128)
    np.testing.assert_allclose(np.linalg.norm(labels, axis=1), 1, atol=1e-5)


@pytest.mark.parametrize("row", sorted(NOT_EXPORTABLE))
def test_rows_that_cannot_export_say_which_do(tmp_path, row):
    with pytest.raises(ConfigError, match=f"'{row}' does not export") as err:
        export_onnx("demo_clip", tmp_path / row, overrides=[f"model.clip.last_block={row}"])
    assert "naclip" in str(err.value) and "baseline_clip" in str(err.value)
    assert not (tmp_path / row).exists()


def test_a_different_existing_file_is_not_overwritten(tmp_path):
    out = tmp_path / "e"
    torch.manual_seed(0)
    export_onnx("demo_clip", out, LABELS)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    torch.manual_seed(0)
    assert export_onnx("demo_clip", out, LABELS)["written"] == []  # the same export: nothing to replace
    torch.manual_seed(1)  # other weights
    with pytest.raises(ConfigError, match="overwrite=true"):
        export_onnx("demo_clip", out, LABELS)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    torch.manual_seed(1)
    assert "image_model.onnx" in export_onnx("demo_clip", out, LABELS, overwrite=True)["written"]
    assert (out / "image_model.onnx").read_bytes() != before["image_model.onnx"]


def test_missing_onnxruntime_names_the_install_command(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime raises ImportError
    with pytest.raises(MissingInputError, match="onnxruntime") as err:
        export_onnx("demo_clip", tmp_path / "e")
    assert INSTALL in str(err.value) and 'pip install -e ".[onnx]"' in str(err.value)
    from lseg_pacl.export.runtime import OnnxSegmenter

    with pytest.raises(MissingInputError, match="onnxruntime"):
        OnnxSegmenter(tmp_path)


def test_the_traced_quantile_is_torchs():
    x = torch.randn(3, 37)
    for q in (0.0, 0.05, 0.5, 0.95, 1.0):
        torch.testing.assert_close(_quantile(x, q, dim=-1, keepdim=True), torch.quantile(x, q, dim=-1,
                                                                                         keepdim=True))
        torch.testing.assert_close(_quantile(x, q, dim=0), torch.quantile(x, q, dim=0))


@pytest.mark.slow
def test_the_bench_suite_sets_pytorch_beside_onnx_runtime():
    from lseg_pacl.bench.export import CASES, export_suite

    figures = export_suite(False, "cpu", cases=CASES[:1])
    assert all(f["unit"] and f["value"] > 0 for f in figures.values())
    assert figures["export.demo_clip_64_max_relative_error"]["value"] < 1e-4
    one = "export.demo_clip_64_1t_"
    assert figures[one + "onnxruntime_speedup"]["value"] == pytest.approx(
        figures[one + "onnxruntime_images_per_s"]["value"] / figures[one + "torch_images_per_s"]["value"])
