"""The training-free rows' cost: images/s per method at ViT-B/16 under the shared slide protocol (short side
336, windows 224 / 112, 21 classes), and the five rows evaluated together on one shared trunk against one row
alone (the target of the shared trunk: at most 1.5x one row), measured side by side in one run."""

from __future__ import annotations

import torch

from lseg_pacl.bench.measure import seconds
from lseg_pacl.evaluation.inference import Protocol, infer
from lseg_pacl.models.clip import ClipBackbone
from lseg_pacl.models.zeroshot import zero_shot_logits

ROWS = {"CLIP": "plain", "MaskCLIP": "maskclip", "SCLIP": "sclip", "ClearCLIP": "clearclip",
        "NACLIP": "naclip"}


def _rows_per_second(clip: ClipBackbone, image: torch.Tensor, blocks: list[str], text: torch.Tensor,
                     protocol: Protocol, repeats: int) -> float:
    def fn(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        grid = clip.grid(*x.shape[-2:])
        dense = clip.dense_features_many(x, blocks)
        return torch.cat([zero_shot_logits(d, grid, text, size) for d in dense], 1)

    with torch.no_grad():
        return 1.0 / seconds(lambda: infer(fn, image, protocol), repeats=repeats)


def rows_suite(full: bool, device: str = "cpu", vitb16: bool = True) -> dict[str, dict]:
    name, side, crop, stride, size = ("ViT-B-16-quickgelu", 336, 224, 112, (336, 448)) if vitb16 \
        else ("lseg-tiny-vit", 48, 32, 16, (48, 64))
    torch.manual_seed(0)
    clip = ClipBackbone(name, None, pos_embed="lineage").to(device).eval()
    g = torch.Generator().manual_seed(0)
    image = torch.randn(1, 3, *size, generator=g).to(device)
    text = torch.nn.functional.normalize(torch.randn(21, clip.embed_dim, generator=g), dim=-1).to(device)
    protocol = Protocol("slide", side, crop=crop, stride=stride, patch=clip.patch_size)
    repeats = 3 if full or not vitb16 else 1
    tag = "vitb16" if vitb16 else "tiny"
    figures: dict[str, dict] = {}
    for label, block in ROWS.items():
        figures[f"rows.{tag}_{label}_images_per_s"] = {
            "value": _rows_per_second(clip, image, [block], text, protocol, repeats),
            "unit": f"images/s ({size[0]}x{size[1]}, slide {crop}/{stride}, 21 classes)",
        }
    together = _rows_per_second(clip, image, list(ROWS.values()), text, protocol, repeats)
    alone = figures[f"rows.{tag}_CLIP_images_per_s"]["value"]
    figures[f"rows.{tag}_five_rows_shared_images_per_s"] = {"value": together,
                                                          "unit": "images/s (all 5 rows)"}
    figures[f"rows.{tag}_five_rows_over_one"] = {
        "value": alone / together, "unit": "x the time of one row alone (target <= 1.5)"}
    return figures
