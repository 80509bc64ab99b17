"""Suite ``export``: images/s of a model's dense image model in PyTorch against its ONNX export under ONNX
Runtime, both on the CPU, side by side in one process (lseg_pacl/export/), each with 1 thread and with
PyTorch's default thread count (on a shared machine the second is at the mercy of the other processes).
The demo's tiny CLIP and PACL (random weights) at 64 px, batch 8; CLIP ViT-B/16 (random weights) at 224 px,
batch 1; full: also at 448 px. Without onnx/onnxruntime it records that nothing was measured."""

from __future__ import annotations

import importlib.util

import numpy as np
import torch

from lseg_pacl.bench.measure import seconds

CASES = (  # (figure name, experiment, overrides, side, batch, full only)
    ("demo_clip_64", "demo_clip", [], 64, 8, False),
    ("demo_pacl_64", "demo_pacl", ["model.clip.pretrained=null"], 64, 8, False),
    ("vitb16_224", "baseline_clip", ["model.clip.pretrained=null"], 224, 1, False),
    ("vitb16_448", "baseline_clip", ["model.clip.pretrained=null"], 448, 1, True),
)


def _case(model, data: bytes, x: torch.Tensor, threads: int, repeats: int) -> tuple[float, float, float]:
    """(PyTorch seconds, ONNX Runtime seconds, max relative error) of one forward of x."""
    from lseg_pacl.export.writer import _session

    session = _session(data, threads)
    feed = {"image": x.numpy()}
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.no_grad():
            want = model(x).numpy()
            torch_s = seconds(lambda: model(x), repeats=repeats)
    finally:
        torch.set_num_threads(before)
    got = session.run(["embeddings"], feed)[0]
    onnx_s = seconds(lambda: session.run(["embeddings"], feed), repeats=repeats)
    return torch_s, onnx_s, float(np.abs(got - want).max() / np.abs(want).max())


def export_suite(full: bool, device: str = "cpu", cases: tuple = CASES) -> dict[str, dict]:
    if importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnx") is None:
        return {"export.skipped": {"value": 0, "unit": 'onnx/onnxruntime missing: pip install -e ".[onnx]"'}}
    from lseg_pacl.commands.predict import load_model
    from lseg_pacl.export.graph import DenseImageModel, spec_of
    from lseg_pacl.export.writer import DEFAULT_OPSET, export_image_model

    figures: dict[str, dict] = {}
    built: dict[tuple, tuple] = {}
    thread_counts = sorted({1, torch.get_num_threads()})
    for name, experiment, overrides, side, batch, full_only in cases:
        if full_only and not full:
            continue
        key = (experiment, tuple(overrides))
        if key not in built:
            torch.manual_seed(0)
            module = load_model(experiment, overrides)[0].float().cpu().eval()
            spec = spec_of(module)
            data = export_image_model(module, spec, DEFAULT_OPSET)[0]
            built[key] = (DenseImageModel(module, spec).eval(), data)
        model, data = built[key]
        x = torch.randn(batch, 3, side, side, generator=torch.Generator().manual_seed(0))
        for threads in thread_counts:
            torch_s, onnx_s, error = _case(model, data, x, threads, 3 if side <= 64 else 2)
            unit = f"images/s, batch {batch}, {side} px, CPU, {threads} thread(s)"
            tag = f"{name}_{threads}t"
            figures[f"export.{tag}_torch_images_per_s"] = {"value": batch / torch_s, "unit": unit}
            figures[f"export.{tag}_onnxruntime_images_per_s"] = {"value": batch / onnx_s, "unit": unit}
            figures[f"export.{tag}_onnxruntime_speedup"] = {"value": torch_s / onnx_s,
                                                           "unit": "x (PyTorch time / ONNX Runtime time)"}
        figures[f"export.{name}_max_relative_error"] = {"value": error, "unit": "ONNX Runtime vs PyTorch"}
    return figures
