"""Suite ``eval``: zero-shot inference throughput (images/s) of the three protocol shapes
(evaluation/inference.py), as ``lseg-pacl eval`` runs them, without the data loading:

- ``demo``: the demo model (tiny CLIP, random weights) on 64 px images, batch 32: whole; sliding 48/24
  windows; multi-scale (0.5..1.75 x flip, sliding).
- ``vitb16``: CLIP ViT-B/16 (random weights) with the SCLIP protocol size on ADE20K-sized images (683 x 512,
  150 classes): whole at short side 336; sliding 224/112 windows; LSeg-style multi-scale (long side 520 x
  0.5..1.75, flip, 480/320 windows). One image at a time, as eval runs.
"""

from __future__ import annotations

import torch

from data_modules.benchmarks import BENCHMARKS
from lseg_pacl.bench.measure import seconds
from lseg_pacl.evaluation.inference import Protocol, infer
from lseg_pacl.models.clip import ClipBackbone
from lseg_pacl.models.zeroshot import zero_shot_logits

SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)


def images_per_second(
    clip: ClipBackbone, images: torch.Tensor, names: tuple[str, ...], protocol: Protocol, repeats: int
) -> float:
    classes = clip.class_embeddings(names, ("a photo of a {}.",)).to(images.device)

    def logits(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        grid = clip.grid(*x.shape[-2:])
        return zero_shot_logits(clip.dense_features(x), grid, classes, size)

    with torch.no_grad():
        return images.shape[0] / seconds(lambda: infer(logits, images, protocol).argmax(1), repeats=repeats)


def eval_suite(full: bool, device: str = "cpu", vitb16: bool = True) -> dict[str, dict]:
    figures: dict[str, dict] = {}
    g = torch.Generator().manual_seed(0)
    demo = ClipBackbone("lseg-tiny-vit", None).to(device).eval()
    demo_images = torch.randn(32, 3, 64, 64, generator=g).to(device)
    demo_names = ("sky", "water", "grass", "tree", "road", "wall", "ball", "box")
    for mode, proto in {
        "whole": Protocol("whole", 64, patch=8),
        "slide": Protocol("slide", 64, crop=48, stride=24, patch=8),
        "multiscale": Protocol("slide", 64, crop=48, stride=24, scales=SCALES, flip=True, patch=8),
    }.items():
        figures[f"eval.demo_{mode}_images_per_s"] = {
            "value": images_per_second(demo, demo_images, demo_names, proto, 3),
            "unit": "images/s",
        }
    if not vitb16:
        return figures
    vit = ClipBackbone("ViT-B-16-quickgelu", None).to(device).eval()
    ade = torch.randn(1, 3, 512, 683, generator=g).to(device)
    names = tuple(BENCHMARKS["ade20k"].classes)
    for mode, proto in {
        "whole_336": Protocol("whole", 336),
        "slide_336": Protocol("slide", 336, crop=224, stride=112),
        "multiscale_520": Protocol(
            "slide", 520, resize="long", crop=480, stride=320, scales=SCALES, flip=True
        ),
    }.items():
        if mode.startswith("multiscale") and not full and device == "cpu":
            proto = Protocol("slide", 520, resize="long", crop=480, stride=320, scales=(1.0,), flip=True)
            mode = "multiscale_520_scale1_flip"  # one of the 12 views' sizes (full=true: all of them)
        figures[f"eval.vitb16_{mode}_images_per_s"] = {
            "value": images_per_second(vit, ade, names, proto, 1),
            "unit": "images/s (ADE20K size, 150 classes)",
        }
    return figures
