"""``lseg-pacl export``: an objective's dense image model as ONNX, with its label embeddings and the rules to
turn them into logits (docs/evaluation.md#export).

Files written into ``out``:

- ``image_model.onnx``: ``image`` float32 [N, 3, H, W], normalised with the model's mean and std, H and W any
  multiple of ``patch`` -> ``embeddings`` float32 [N, D, gh, gw], unit vectors along D. Position embeddings
  are resized inside the graph: the export is traced at a size other than the model's own and checked
  against PyTorch with ONNX Runtime at three sizes (the traced one, the model's own, a non-square one)
  before anything is written.
- ``logits_head.onnx`` (LSeg with a spatial regularisation block only): (``embeddings`` [N, D, gh, gw],
  ``labels`` [C, D]) -> ``logits`` [N, C, gh, gw], the logits before upsampling.
- ``labels.npy`` (with ``labels=``): float32 [C, D], each label's unit embedding with the model's eval
  templates.
- ``metadata.json``: normalisation, patch, grid rule, embedding dim, label names, the logit rule, the eval
  protocol predict runs, the source, the project version, the opset and the checks' errors.

A different existing file is never replaced unless ``overwrite=true``; nothing is written when one would be.
"""

from __future__ import annotations

import dataclasses
import filecmp
import io
import json
import logging
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

import lseg_pacl
from lseg_pacl.errors import ConfigError, UserError
from lseg_pacl.export.deps import require
from lseg_pacl.export.graph import (
    DenseImageModel,
    LSegLogitsHead,
    Spec,
    exportable_rows,
    spec_of,
    traceable_attention,
)

log = logging.getLogger(__name__)

IMAGE_MODEL = "image_model.onnx"
HEAD_MODEL = "logits_head.onnx"
LABELS = "labels.npy"
METADATA = "metadata.json"
FORMAT = "lseg_pacl-onnx"
FORMAT_VERSION = 1
DEFAULT_OPSET = 17
TOLERANCE = 1e-4  # max |onnx - torch| / max |torch| at every checked size


class ExportError(UserError):
    """The exported graph does not reproduce the model (the message says where); nothing was written."""

    exit_code = 1


def check_sizes(spec: Spec) -> list[tuple[int, int]]:
    """(traced size, the model's own size, a non-square size), each side a multiple of the patch."""
    p, side = spec.patch, max(spec.native_side, 2 * spec.patch)
    g = side // p
    return [((g + 1) * p, (g + 2) * p), (g * p, g * p), (max(2, g - 2) * p, (g + 3) * p)]


def _onnx_bytes(model: torch.nn.Module, args: tuple, names: tuple[list[str], list[str]], axes: dict,
                opset: int) -> bytes:
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad(), traceable_attention(model):
            warnings.simplefilter("ignore")  # TracerWarnings: the shape checks become constants, as intended
            torch.onnx.export(model, args, buffer, input_names=names[0], output_names=names[1],
                              dynamic_axes=axes, opset_version=opset, do_constant_folding=True, dynamo=False)
    except Exception as exc:  # noqa: BLE001 - whatever the tracer or the exporter met, name it
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ExportError(f"{type(model).__name__} does not trace to ONNX at opset {opset} "
                          f"({type(exc).__name__}: {first}); {exportable_rows()}") from exc
    return buffer.getvalue()


def _session(data: bytes, threads: int | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def _run(session, outputs: list[str], feed: dict) -> np.ndarray:
    try:
        return session.run(outputs, feed)[0]
    except Exception as exc:  # noqa: BLE001 - an operator ONNX Runtime lacks, a shape baked into the graph
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ExportError(f"ONNX Runtime cannot run the export ({type(exc).__name__}: {first[:300]}); "
                          f"nothing was written; {exportable_rows()}") from exc


def _relative_error(got: np.ndarray, want: np.ndarray) -> float:
    if got.shape != want.shape:
        return float("inf")
    return float(np.abs(got - want).max() / max(float(np.abs(want).max()), 1e-12))


def _checked(kind: str, errors: list[dict], tolerance: float) -> None:
    worst = max(errors, key=lambda e: e["max_relative_error"])
    if not worst["max_relative_error"] <= tolerance:
        h, w = worst["size"]
        raise ExportError(
            f"the exported {kind} does not reproduce PyTorch at {h}x{w} (relative error "
            f"{worst['max_relative_error']:.3g} > {tolerance:g}); nothing was written"
        )


def export_image_model(module, spec: Spec, opset: int,
                       tolerance: float = TOLERANCE) -> tuple[bytes, list[dict]]:
    """(the ONNX bytes of the dense image model, its check at each of ``check_sizes``)."""
    model = DenseImageModel(module, spec).eval()
    sizes = check_sizes(spec)
    gen = torch.Generator().manual_seed(0)
    traced = torch.randn(1, 3, *sizes[0], generator=gen)
    data = _onnx_bytes(model, (traced,), (["image"], ["embeddings"]),
                       {"image": {0: "batch", 2: "height", 3: "width"},
                        "embeddings": {0: "batch", 2: "grid_height", 3: "grid_width"}}, opset)
    session = _session(data)
    errors = []
    for k, size in enumerate(sizes):
        x = torch.randn(2 if k == 2 else 1, 3, *size, generator=gen)
        with torch.no_grad():
            want = model(x).numpy()
        got = _run(session, ["embeddings"], {"image": x.numpy()})
        errors.append({"size": list(size), "batch": int(x.shape[0]),
                       "max_relative_error": _relative_error(got, want)})
    _checked("image model", errors, tolerance)
    return data, errors


def export_head(module, spec: Spec, opset: int,
                tolerance: float = TOLERANCE) -> tuple[bytes, list[dict]]:
    """LSeg's logits head (scale x cosine, spatial regularisation) with dynamic N, C, h, w."""
    head = LSegLogitsHead(module.net).eval()
    gen = torch.Generator().manual_seed(1)

    def inputs(n: int, c: int, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
        emb = torch.nn.functional.normalize(torch.randn(n, spec.dim, h, w, generator=gen), dim=1)
        return emb, torch.nn.functional.normalize(torch.randn(c, spec.dim, generator=gen), dim=-1)

    data = _onnx_bytes(head, inputs(1, 3, 5, 6), (["embeddings", "labels"], ["logits"]),
                       {"embeddings": {0: "batch", 2: "grid_height", 3: "grid_width"},
                        "labels": {0: "classes"}, "logits": {0: "batch", 1: "classes", 2: "grid_height",
                                                             3: "grid_width"}}, opset)
    session = _session(data)
    errors = []
    for n, c, h, w in ((1, 3, 5, 6), (2, 7, 9, 4)):
        emb, labels = inputs(n, c, h, w)
        with torch.no_grad():
            want = head(emb, labels).numpy()
        got = _run(session, ["logits"], {"embeddings": emb.numpy(), "labels": labels.numpy()})
        errors.append({"size": [h, w], "batch": n, "classes": c,
                       "max_relative_error": _relative_error(got, want)})
    _checked("logits head", errors, tolerance)
    return data, errors


def logit_rule(spec: Spec) -> dict:
    upsample = {"mode": "bilinear", "align_corners": spec.align_corners}
    if spec.objective == "lseg":
        return {
            "rule": "lseg",
            "formula": "scale x cosine(embeddings, labels) at the grid"
                       + (", then logits_head.onnx's spatial regularisation" if spec.head else "")
                       + ", then bilinear upsampling (align_corners=True) to the image",
            "scale": spec.scale,
            "head": HEAD_MODEL if spec.head else None,
            "upsample": upsample,
        }
    return {
        "rule": "cosine",
        "formula": "cosine(embeddings, labels) at the grid, then bilinear upsampling (align_corners=False) "
                   "to the image (zero_shot_logits)",
        "scale": 1.0,
        "head": None,
        "upsample": upsample,
    }


def _protocol(cfg, patch: int) -> dict:
    from lseg_pacl.evaluation.settings import protocol_for

    proto = dataclasses.asdict(protocol_for(cfg.eval, patch, cfg.data.val.image_size))
    return {k: list(v) if isinstance(v, tuple) else v for k, v in proto.items()}


def _place(files: dict[str, bytes], out: Path, overwrite: bool) -> list[str]:
    """Write ``files`` into ``out``: an identical existing file is left as it is; a different one stops
    everything unless ``overwrite``."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=".export-") as tmp:
        staged = {}
        for name, data in files.items():
            staged[name] = Path(tmp) / name
            staged[name].write_bytes(data)
        differ = [name for name, path in staged.items()
                  if (out / name).exists() and not ((out / name).is_file()
                                                   and filecmp.cmp(out / name, path, shallow=False))]
        if differ and not overwrite:
            raise ConfigError(f"{out / differ[0]} exists and differs from this export (overwrite=true "
                              f"replaces it); nothing was written")
        written = []
        for name, path in staged.items():
            if (out / name).is_file() and name not in differ:
                continue
            if (out / name).is_dir():
                shutil.rmtree(out / name)
            path.replace(out / name)
            written.append(name)
    return written


def export_onnx(ckpt: str, out: str | Path, labels: str | None = None, opset: int = DEFAULT_OPSET,
                overwrite: bool = False, overrides: list[str] | None = None) -> dict:
    """Export the model of ``ckpt`` (a checkpoint or an experiment, as ``predict`` takes it) into ``out``."""
    require(what="ONNX export")
    from lseg_pacl.commands.predict import load_model, parse_labels
    from lseg_pacl.models.prompts import templates

    if not 11 <= opset <= 23:
        raise ConfigError(f"opset={opset}: use an ONNX opset between 11 and 23 (default {DEFAULT_OPSET})")
    names = parse_labels(labels) if labels is not None else None
    module, cfg = load_model(ckpt, list(overrides or []))
    module = module.float().cpu().eval()
    spec = spec_of(module)
    log.info("exporting %s (%s%s) at opset %d", ckpt, spec.objective,
             f", last block {spec.last_block}" if spec.last_block else "", opset)
    files: dict[str, bytes] = {}
    files[IMAGE_MODEL], checks = export_image_model(module, spec, opset)
    head_checks = None
    if spec.head:
        files[HEAD_MODEL], head_checks = export_head(module, spec, opset)
    label_info = None
    if names is not None:
        emb = module.clip.class_embeddings(names, templates(cfg.eval.templates)).float().cpu().numpy()
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(emb, dtype=np.float32))
        files[LABELS] = buffer.getvalue()
        label_info = {"file": LABELS, "names": list(names), "templates": cfg.eval.templates,
                      "layout": "[C, D] float32, unit rows"}
    import onnx
    import onnxruntime

    source = Path(ckpt).expanduser()
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "project_version": lseg_pacl.__version__,
        "source": {
            "ckpt": str(source.resolve()) if source.is_file() else ckpt,
            "kind": "checkpoint" if source.is_file() else "experiment",
            "objective": spec.objective,
            "last_block": spec.last_block,
            "overrides": list(overrides or []),
        },
        "opset": opset,
        "exported_with": {"torch": torch.__version__, "onnx": onnx.__version__,
                          "onnxruntime": onnxruntime.__version__},
        "input": {"file": IMAGE_MODEL, "name": "image", "layout": "[N, 3, H, W] float32, RGB / 255 then "
                  "(x - mean) / std", "mean": list(module.input_mean), "std": list(module.input_std),
                  "patch": spec.patch},
        "output": {"name": "embeddings", "layout": "[N, D, gh, gw] float32, unit vectors along D",
                   "dim": spec.dim, "grid_stride": spec.grid_stride,
                   "grid": f"H/{spec.grid_stride} x W/{spec.grid_stride}"},
        "labels": label_info,
        "logits": logit_rule(spec),
        "protocol": _protocol(cfg, spec.patch),
        "checks": {"tolerance": TOLERANCE, "image_model": checks, "logits_head": head_checks},
    }
    files[METADATA] = (json.dumps(metadata, indent=2) + "\n").encode()
    out_dir = Path(out).expanduser()
    written = _place(files, out_dir, overwrite)
    worst = max(c["max_relative_error"] for c in checks)
    print(f"exported {ckpt} to {out_dir}: {', '.join(files)} (ONNX Runtime vs PyTorch at "
          f"{', '.join('x'.join(map(str, c['size'])) for c in checks)}: max relative error {worst:.2g})")
    return {"out": str(out_dir), "files": list(files), "written": written, "metadata": metadata}
