"""The training-free rows' cost: images/s and peak memory per method at ViT-B/16 under the shared slide
protocol (short side 336, windows 224 / 112, 21 classes; every method with its default options, ProxyCLIP with
a random-weight DINO ViT-B/8), each method in a fresh process (a clean memory baseline: the peak is what one
image's inference needs beyond the built model); and the five last-block rows evaluated together on one shared
trunk against one row alone (the target of the shared trunk: at most 1.5x one row), side by side."""

from __future__ import annotations

import torch

from lseg_pacl.bench.measure import in_fresh_process, peak_bytes, seconds
from lseg_pacl.evaluation.inference import Protocol, infer
from lseg_pacl.methods import build_method
from lseg_pacl.models.clip import ClipBackbone
from lseg_pacl.models.trunk import NOTHING

LAST_BLOCK_ROWS = {"CLIP": "plain", "MaskCLIP": "maskclip", "SCLIP": "sclip", "ClearCLIP": "clearclip",
                   "NACLIP": "naclip"}
NEWER_ROWS = {"ResCLIP": "resclip", "SC-CLIP": "scclip", "CLIPtrase": "cliptrase", "PEARL": "pearl",
              "ProxyCLIP": "proxyclip"}
ROWS = {**LAST_BLOCK_ROWS, **NEWER_ROWS}
VITB16_OPTIONS = {"proxyclip": {"vfm_weights": None}}  # random weights: nothing is downloaded
TINY_OPTIONS = {  # the defaults count ViT-B/16's 12 blocks; the 4-block test model needs its own
    "resclip": {"rcs_layers": [1, 2, 3]},
    "scclip": {"pre_adjust_layer": 2, "post_adjust_layer": 1, "multi_layers": [1, 2, 3], "lof_k": 8},
    "proxyclip": {"vfm": "vit_small_patch8_224", "vfm_weights": None},
    "cliptrase": {"correlation_layer": 3},
}


def _rows_per_second(clip: ClipBackbone, image: torch.Tensor, methods: list[str], text: torch.Tensor,
                     protocol: Protocol, repeats: int, options: dict) -> float:
    built = [build_method(m, options.get(m)) for m in methods]
    needs = NOTHING
    for method in built:
        needs = needs | method.needs()

    def fn(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        trunk = clip.trunk(x, needs)
        return torch.cat([m.logits(clip, trunk, x, text, size) for m in built], 1)

    with torch.no_grad():
        return 1.0 / seconds(lambda: infer(fn, image, protocol), repeats=repeats)


def _setup(vitb16: bool, device: str):
    name, side, crop, stride, size = ("ViT-B-16-quickgelu", 336, 224, 112, (336, 448)) if vitb16 \
        else ("lseg-tiny-vit", 48, 32, 16, (48, 64))
    torch.manual_seed(0)
    clip = ClipBackbone(name, None, pos_embed="lineage").to(device).eval()
    g = torch.Generator().manual_seed(0)
    image = torch.randn(1, 3, *size, generator=g).to(device)
    text = torch.nn.functional.normalize(torch.randn(21, clip.embed_dim, generator=g), dim=-1).to(device)
    protocol = Protocol("slide", side, crop=crop, stride=stride, patch=clip.patch_size)
    options = VITB16_OPTIONS if vitb16 else TINY_OPTIONS
    unit = f"images/s ({size[0]}x{size[1]}, slide {crop}/{stride}, 21 classes)"
    return clip, image, text, protocol, options, unit


def one_row(method: str, vitb16: bool, device: str, repeats: int) -> dict:
    """In a fresh process: the peak memory of one image's inference (first: the peak only grows), then
    images/s."""
    clip, image, text, protocol, options, _ = _setup(vitb16, device)
    built = build_method(method, options.get(method))

    def run(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return built.logits(clip, clip.trunk(x, built.needs()), x, text, size)

    def once() -> None:
        with torch.no_grad():
            infer(run, image, protocol)

    peak = peak_bytes(once, device)
    return {"images_per_s": _rows_per_second(clip, image, [method], text, protocol, repeats, options),
            "peak_bytes": peak}


def shared_rows(vitb16: bool, device: str, repeats: int) -> dict:
    """In one process, side by side: CLIP alone and the five last-block rows on one shared trunk."""
    clip, image, text, protocol, options, _ = _setup(vitb16, device)
    alone = _rows_per_second(clip, image, ["plain"], text, protocol, repeats, options)
    together = _rows_per_second(clip, image, list(LAST_BLOCK_ROWS.values()), text, protocol, repeats, options)
    return {"alone": alone, "together": together}


def rows_suite(full: bool, device: str = "cpu", vitb16: bool = True) -> dict[str, dict]:
    repeats = 3 if full or not vitb16 else 1
    tag = "vitb16" if vitb16 else "tiny"
    unit = _setup(vitb16, "cpu")[-1] if not vitb16 else "images/s (336x448, slide 224/112, 21 classes)"
    figures: dict[str, dict] = {}
    for label, method in ROWS.items():
        row = in_fresh_process(one_row, method, vitb16, device, repeats)
        figures[f"rows.{tag}_{label}_images_per_s"] = {"value": row["images_per_s"], "unit": unit}
        figures[f"rows.{tag}_{label}_peak_mib"] = {"value": row["peak_bytes"] / 2**20,
                                                  "unit": "MiB beyond the built model, one image"}
    shared = in_fresh_process(shared_rows, vitb16, device, repeats)
    figures[f"rows.{tag}_one_row_images_per_s"] = {"value": shared["alone"], "unit": "images/s (CLIP alone)"}
    figures[f"rows.{tag}_five_rows_shared_images_per_s"] = {"value": shared["together"],
                                                          "unit": "images/s (the 5 last-block rows)"}
    figures[f"rows.{tag}_five_rows_over_one"] = {
        "value": shared["alone"] / shared["together"], "unit": "x the time of one row alone (target <= 1.5)"}
    return figures
