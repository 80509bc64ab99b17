"""``lseg-pacl predict``: segment your own images with your own words.

For each image: ``<stem>_overlay.png`` (the image with the segmentation blended in and a legend),
``<stem>_labels.png`` (a palette PNG of label ids at the image's own size) and ``<stem>.json`` (the labels and
each label's share of the pixels); with ``embeddings=true`` also ``<stem>_embeddings.safetensors`` (the dense
unit embeddings on the model's grid, with the grid in the metadata). The model is a checkpoint of any
objective, or an experiment's training-free model (the baselines); the protocol (mode, templates, scales,
flip) is the eval.* section of its config, overridable with key=value words. A file that cannot be read is
reported and skipped; nothing is overwritten unless ``overwrite=true``.

``backend=onnx export=DIR`` runs an export (``lseg-pacl export``, lseg_pacl/export/) with ONNX Runtime on the
CPU instead: the same resizing, windows and outputs, only the model's forward differs. The labels are the
export's (``labels=``, when given, must name the same labels in the same order: ONNX has no text model) and
the protocol the one it was exported with (``mode=``, ``short_side=``, ... override it).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from data_modules.bad_samples import BadSample
from data_modules.images import read_rgb
from lseg_pacl.config.loading import available_experiments, load_config, saved_with_overrides, to_plain
from lseg_pacl.errors import ConfigError, MissingInputError
from lseg_pacl.evaluation.inference import infer, resize_short_side
from lseg_pacl.evaluation.pictures import overlay, palette
from lseg_pacl.evaluation.settings import autocast_for, device_for, precision_for, protocol_for
from lseg_pacl.models.prompts import templates
from lseg_pacl.objectives import build_objective, load_objective

log = logging.getLogger(__name__)
OUTPUTS = ("{}_overlay.png", "{}_labels.png", "{}.json")
EMBEDDINGS = "{}_embeddings.safetensors"


def parse_labels(text: str) -> tuple[str, ...]:
    """Comma-separated names, stripped, duplicates dropped (first kept); an empty list is an error."""
    names: list[str] = []
    for raw in text.split(","):
        name = raw.strip()
        if name and name.lower() not in (n.lower() for n in names):
            names.append(name)
        elif name:
            log.warning("label '%s' is given twice; kept once", name)
    if not names:
        raise ConfigError('labels= must name at least one label, e.g. labels="cat, grass, other"')
    if len(names) > 255:
        raise ConfigError(f"{len(names)} labels: at most 255 fit a label PNG")
    return tuple(names)


def image_files(path: str, out_dir: Path | None = None) -> list[Path]:
    """The file, or a folder's files (hidden files and this command's own outputs left out)."""
    p = Path(path).expanduser()
    if p.is_file():
        return [p]
    if p.is_dir():
        own = ("_overlay.png", "_labels.png", "_embeddings.safetensors", ".json")
        files = sorted(
            f
            for f in p.iterdir()
            if f.is_file()
            and not f.name.startswith(".")
            and not (out_dir is not None and p.resolve() == out_dir.resolve() and f.name.endswith(own))
        )
        if not files:
            raise MissingInputError(f"{p} holds no files")
        return files
    raise MissingInputError(f"image={path}: no such file or folder")


def load_model(ckpt: str, overrides: list[str]):
    """(module, config): a checkpoint file with its own config, or an experiment's training-free model."""
    path = Path(ckpt).expanduser()
    if path.is_file():
        module = load_objective(path)
        cfg = saved_with_overrides(module.cfg, overrides)
        if (
            cfg.model.clip.last_block != module.cfg.model.clip.last_block
        ):  # a training-free variant of its CLIP
            module = load_objective(path, last_block=cfg.model.clip.last_block)
        return module, cfg
    if ckpt in available_experiments():
        cfg = load_config(ckpt, overrides)
        if cfg.stages:
            raise ConfigError(f"'{ckpt}' is a pipeline: pass one of its stages' checkpoints as ckpt=")
        return build_objective(to_plain(cfg)), cfg
    raise MissingInputError(
        f"ckpt={ckpt} is neither a checkpoint file nor an experiment ({', '.join(available_experiments())})"
    )


def _torch_dense(module):
    """x [1, 3, h, w] -> unit embeddings [gh, gw, D] of a PyTorch objective."""

    def dense(x: torch.Tensor) -> torch.Tensor:
        grid = module.dense_grid(x.shape[-2], x.shape[-1])
        emb = torch.nn.functional.normalize(module.dense_embeddings(x).float(), dim=-1)[0]
        return emb.reshape(grid[0], grid[1], -1)

    return dense


def _write_embeddings(dense_fn, patch: int, image: torch.Tensor, short_side: int, path: Path) -> None:
    from safetensors.torch import save_file

    x = resize_short_side(image, short_side)
    x = x[..., : x.shape[-2] // patch * patch, : x.shape[-1] // patch * patch]
    dense = dense_fn(x)
    grid = tuple(dense.shape[:2])
    save_file(
        {"embeddings": dense.contiguous().cpu()},
        str(path),
        metadata={
            "grid": f"{grid[0]},{grid[1]}",
            "input_size": f"{x.shape[-2]},{x.shape[-1]}",
            "layout": "[grid_h, grid_w, dim], unit vectors, row-major",
        },
    )


BACKENDS = ("torch", "onnx")


def _onnx_model(export: str | None, labels: str | None, overrides: list[str]):
    """(the export under ONNX Runtime, its label names, its protocol with the ``eval.*`` overrides)."""
    from omegaconf import OmegaConf

    from lseg_pacl.export.runtime import OnnxSegmenter

    if not export:
        raise ConfigError("backend=onnx needs export=DIR (a folder written by lseg-pacl export)")
    model = OnnxSegmenter(export)
    if model.label_embeddings is None:
        raise ConfigError(f"the export in {export} holds no labels: export it with labels=\"a, b, ...\"")
    if labels is not None and parse_labels(labels) != model.names:
        raise ConfigError(f"labels= must be the export's labels ({', '.join(model.names)}): an ONNX export "
                          f"has no text model; export again with the labels you want")
    protocol_words = [w.removeprefix("eval.") for w in overrides if w.startswith("eval.")]
    others = [w for w in overrides if not w.startswith("eval.")]
    if others:
        raise ConfigError(f"backend=onnx takes no model or config keys ({', '.join(others)}): the model is "
                          f"the export's")
    values = OmegaConf.to_container(OmegaConf.from_dotlist(protocol_words)) if protocol_words else {}
    return model, model.names, model.protocol(values)


def predict(
    ckpt: str | None,
    image: str,
    labels: str | None,
    out: str = "predictions",
    embeddings: bool = False,
    overwrite: bool = False,
    overrides: list[str] | None = None,
    limit: int | None = None,
    backend: str = "torch",
    export: str | None = None,
) -> dict:
    if backend not in BACKENDS:
        raise ConfigError(f"backend={backend}: use one of {', '.join(BACKENDS)}")
    out_dir = Path(out).expanduser()
    files = image_files(image, out_dir)
    files = files[:limit] if limit else files
    stems = [f.stem for f in files]
    if backend == "onnx":
        model, names, proto = _onnx_model(export, labels, list(overrides or []))
        device, precision, text = torch.device("cpu"), "fp32", model.label_embeddings
        dense_fn = lambda x: model.embeddings(x)[0].permute(1, 2, 0)  # noqa: E731
        logits_fn = model.logits
    else:
        if ckpt is None or labels is None:
            raise ConfigError("predict needs ckpt= and labels= (or backend=onnx export=DIR)")
        names = parse_labels(labels)
        model, cfg = load_model(ckpt, list(overrides or []))
        device = device_for(cfg)
        model = model.to(device).eval()
        proto = protocol_for(cfg.eval, model.patch_size, cfg.data.val.image_size)
        precision = precision_for(cfg, cfg.eval, device)
        text = model.clip.class_embeddings(names, templates(cfg.eval.templates)).to(device)
        dense_fn, logits_fn = _torch_dense(model), model.logits
    out_dir.mkdir(parents=True, exist_ok=True)
    mean = torch.tensor(model.input_mean).view(1, 3, 1, 1)
    std = torch.tensor(model.input_std).view(1, 3, 1, 1)
    done, problems = [], []
    progress = _progress(files)
    for file in progress:
        name = file.stem if stems.count(file.stem) == 1 else file.name  # a.jpg and a.png: a.jpg_*, a.png_*
        targets = [out_dir / t.format(name) for t in OUTPUTS] + (
            [out_dir / EMBEDDINGS.format(name)] if embeddings else []
        )
        existing = [t for t in targets if t.exists()]
        if existing and not overwrite:
            problems.append(
                {"file": str(file), "reason": f"{existing[0]} exists (overwrite=true replaces it)"}
            )
            continue
        try:
            rgb = read_rgb(file)
        except BadSample as exc:
            problems.append(
                {"file": str(file), "reason": f"not a readable image ({exc.detail or exc.reason})"}
            )
            continue
        raw = torch.from_numpy(np.array(rgb)).permute(2, 0, 1)[None].to(device)
        x = ((raw.float().cpu() / 255 - mean) / std).to(device)
        with torch.no_grad(), autocast_for(precision, device):
            fn = lambda im, size: logits_fn(im, text, size)  # noqa: E731
            label_map = infer(fn, raw, proto, (model.input_mean, model.input_std)).argmax(1)[0]
            if embeddings:
                _write_embeddings(dense_fn, model.patch_size, x, proto.short_side, targets[3])
        ids = label_map.cpu().numpy().astype(np.uint8)
        overlay(rgb, ids, names, title=file.name).save(targets[0])
        palette_png(ids, len(names)).save(targets[1])
        summary = {
            "image": str(file),
            "size": [int(rgb.shape[0]), int(rgb.shape[1])],
            "labels": list(names),
            "share": label_shares(ids, names),
        }
        targets[2].write_text(json.dumps(summary, indent=2), encoding="utf-8")
        done.append(str(file))
    for p in problems:
        print(f"skipped {p['file']}: {p['reason']}", file=sys.stderr)
    print(f"{len(done)} of {len(files)} images segmented into {out_dir}")
    return {"done": done, "problems": problems, "out": str(out_dir)}


def label_shares(ids: np.ndarray, names: tuple[str, ...]) -> dict[str, float]:
    """Each label's share of the pixels, rounded to 6 decimals as the JSON keeps them."""
    counts = np.bincount(ids.ravel(), minlength=len(names))
    return {n: round(float(c) / ids.size, 6) for n, c in zip(names, counts, strict=True)}


def palette_png(ids: np.ndarray, n: int) -> Image.Image:
    img = Image.fromarray(ids, mode="P")
    colours = palette(n)
    img.putpalette(colours.astype(np.uint8).ravel().tolist() + [0] * (3 * (256 - n)))
    return img


def _progress(files: list[Path]):
    try:
        from tqdm import tqdm
    except ImportError:
        return files
    return tqdm(files, desc="predict", unit="image", disable=len(files) < 2)
