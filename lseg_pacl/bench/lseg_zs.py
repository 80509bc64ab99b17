"""Suite ``lseg_zs``: one training step of LSeg's zero-shot model (objectives/lseg.py ``episode_loss``: the
support and the query of each episode at 480x480, 2-way texts, cross-entropy, backward, SGD step), for the
ResNet-101 DPT (PASCAL-5i, COCO-20i) and the ViT-L/16 DPT (FSS-1000), random weights, CLIP ViT-B/32's text
tower. Quick: one episode per step (2 images); ``full=true``: 4 episodes. Each case runs in its own process
(a clean peak-memory baseline); the step's time is the median of 2 steps after one warm-up step.
"""

from __future__ import annotations

import os

import torch

from lseg_pacl.bench.measure import in_fresh_process, peak_bytes, seconds

BACKBONES = {"rn101": "resnet101", "vitl16": "vit_large_patch16_384"}


def one_step(backbone: str, episodes: int, size: int, clip: str, device: str) -> dict:
    """Peak memory of the first step and the median time of the next ones; a spawned child runs this."""
    torch.set_num_threads(os.cpu_count() or 1)
    from lseg_pacl.config.loading import load_config, to_plain
    from lseg_pacl.objectives.lseg import LSeg

    pretrained = "openai" if clip == "ViT-B-32" else "null"  # the activation of the tag; no weights are read
    cfg = load_config("lseg_zs_pascal", [f"model.lseg.backbone={backbone}", f"model.clip.name={clip}",
                                         f"model.clip.pretrained={pretrained}", f"data.episodes.size={size}"])
    torch.manual_seed(0)
    classes = ("aeroplane", "bicycle", "bird")
    module = LSeg(to_plain(cfg), load_pretrained=False, train_classes=classes).to(device)
    module.train()
    opt = torch.optim.SGD([p for _, p in module.trainable_parameters()], lr=1e-3, momentum=0.9)
    g = torch.Generator().manual_seed(0)
    batch = {
        "image": torch.randn(episodes, 3, size, size, generator=g),
        "support_image": torch.randn(episodes, 3, size, size, generator=g),
        "target": torch.randint(0, 2, (episodes, size, size), generator=g),
        "support_target": torch.randint(0, 2, (episodes, size, size), generator=g),
        "class_id": torch.arange(episodes) % 3,
    }
    batch = {k: v.to(device) for k, v in batch.items()}

    def step() -> None:
        opt.zero_grad()
        module.episode_loss(batch).backward()
        opt.step()

    peak = peak_bytes(step, device)
    return {"peak_bytes": peak, "seconds": seconds(step, repeats=2, warmup=0)}


def lseg_zs_suite(full: bool, device: str = "cpu", size: int = 480, clip: str = "ViT-B-32",
                  backbones: dict[str, str] | None = None) -> dict[str, dict]:
    episodes = 4 if full else 1
    figures: dict[str, dict] = {}
    for label, backbone in (backbones or BACKBONES).items():
        run = in_fresh_process(one_step, backbone, episodes, size, clip, device)
        figures[f"lseg_zs.{label}_step_s_{episodes}ep_{size}"] = {
            "value": run["seconds"], "unit": f"s per step ({episodes} episode(s) = {2 * episodes} images)"}
        figures[f"lseg_zs.{label}_peak_mib_{episodes}ep_{size}"] = {
            "value": run["peak_bytes"] / 2**20, "unit": "MiB"}
    return figures
