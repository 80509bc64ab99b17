"""``lseg-pacl predict``: segment your own images with your own words.

For each image: ``<stem>_overlay.png`` (the image with the segmentation blended in and a legend),
``<stem>_labels.png`` (a palette PNG of label ids at the image's own size) and ``<stem>.json`` (the labels and
each label's share of the pixels); with ``embeddings=true`` also ``<stem>_embeddings.safetensors`` (the dense
unit embeddings on the model's grid, with the grid in the metadata). The model is a checkpoint of any
objective, or an experiment's training-free model (the baselines); the protocol (mode, templates, scales,
flip) is the eval.* section of its config, overridable with key=value words. A file that cannot be read is
reported and skipped; nothing is overwritten unless ``overwrite=true``.
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


def _write_embeddings(module, image: torch.Tensor, short_side: int, path: Path) -> None:
    from safetensors.torch import save_file

    x = resize_short_side(image, short_side)
    p = module.patch_size
    x = x[..., : x.shape[-2] // p * p, : x.shape[-1] // p * p]
    grid = module.dense_grid(x.shape[-2], x.shape[-1])
    dense = torch.nn.functional.normalize(module.dense_embeddings(x).float(), dim=-1)[0]
    save_file(
        {"embeddings": dense.reshape(grid[0], grid[1], -1).contiguous().cpu()},
        str(path),
        metadata={
            "grid": f"{grid[0]},{grid[1]}",
            "input_size": f"{x.shape[-2]},{x.shape[-1]}",
            "layout": "[grid_h, grid_w, dim], unit vectors, row-major",
        },
    )


def predict(
    ckpt: str,
    image: str,
    labels: str,
    out: str = "predictions",
    embeddings: bool = False,
    overwrite: bool = False,
    overrides: list[str] | None = None,
    limit: int | None = None,
) -> dict:
    names = parse_labels(labels)
    out_dir = Path(out).expanduser()
    files = image_files(image, out_dir)
    files = files[:limit] if limit else files
    stems = [f.stem for f in files]
    module, cfg = load_model(ckpt, list(overrides or []))
    device = device_for(cfg)
    module = module.to(device).eval()
    proto = protocol_for(cfg.eval, module.patch_size, cfg.data.val.image_size)
    precision = precision_for(cfg, cfg.eval, device)
    text = module.clip.class_embeddings(names, templates(cfg.eval.templates)).to(device)
    out_dir.mkdir(parents=True, exist_ok=True)
    mean = torch.tensor(module.input_mean).view(1, 3, 1, 1)
    std = torch.tensor(module.input_std).view(1, 3, 1, 1)
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
            fn = lambda im, size: module.logits(im, text, size)  # noqa: E731
            label_map = infer(fn, raw, proto, (module.input_mean, module.input_std)).argmax(1)[0]
            if embeddings:
                _write_embeddings(module, x, proto.short_side, targets[3])
        ids = label_map.cpu().numpy().astype(np.uint8)
        overlay(rgb, ids, names, title=file.name).save(targets[0])
        _palette_png(ids, len(names)).save(targets[1])
        counts = np.bincount(ids.ravel(), minlength=len(names))
        summary = {
            "image": str(file),
            "size": [int(rgb.shape[0]), int(rgb.shape[1])],
            "labels": list(names),
            "share": {n: round(float(c) / ids.size, 6) for n, c in zip(names, counts, strict=True)},
        }
        targets[2].write_text(json.dumps(summary, indent=2), encoding="utf-8")
        done.append(str(file))
    for p in problems:
        print(f"skipped {p['file']}: {p['reason']}", file=sys.stderr)
    print(f"{len(done)} of {len(files)} images segmented into {out_dir}")
    return {"done": done, "problems": problems, "out": str(out_dir)}


def _palette_png(ids: np.ndarray, n: int) -> Image.Image:
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
