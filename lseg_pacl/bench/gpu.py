"""Suite ``gpu`` (CUDA only; on a machine without one it reports that and measures nothing):

- the bf16 matmul rate (8192^2 x 8192 products), the ceiling every figure below is compared with;
- frozen CLIP ViT-B/16 image forward at 224 in bf16, batch 256: images/s, against the ceiling
  rate / FLOPs per image (``vit_macs``), and the fraction of it reached;
- PACL training steps/s at batch 1024 (bf16 autocast, frozen encoders live, embedder + loss in fp32 as in
  training) and from stored features (the feature cache);
ADE20K-size evaluation images/s come from the ``eval`` suite, which runs on the GPU when there is one.
"""

from __future__ import annotations

import torch

from lseg_pacl.bench.measure import seconds


def vit_macs(width: int, layers: int, patch: int, image: int, mlp_ratio: float = 4.0) -> float:
    """Multiply-accumulates of one ViT image forward: patch embedding plus, per layer and token, the qkv and
    output projections (4 d^2), the MLP (2 * mlp_ratio * d^2) and attention (2 N d)."""
    patches = (image // patch) ** 2
    tokens = patches + 1
    per_token = (4 + 2 * mlp_ratio) * width**2 + 2 * tokens * width
    return patches * 3 * patch * patch * width + layers * tokens * per_token


def matmul_tflops(device: str, n: int = 8192) -> float:
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    return 2 * n**3 / seconds(lambda: a @ b, repeats=10, warmup=3) / 1e12


def gpu_suite(full: bool, device: str = "cpu") -> dict[str, dict]:
    if not device.startswith("cuda"):
        return {"gpu.available": {"value": 0, "unit": "no CUDA device: nothing measured"}}
    from lseg_pacl.bench.feature_cache import caption_batch, trainable_step, vitb16_pacl

    torch.backends.cuda.matmul.allow_tf32 = True
    figures: dict[str, dict] = {"gpu.available": {"value": 1, "unit": torch.cuda.get_device_name(0)}}
    rate = matmul_tflops(device)
    figures["gpu.matmul_bf16_tflops"] = {"value": rate, "unit": "TFLOP/s"}
    module = vitb16_pacl(device)
    visual = module.clip.model.visual
    macs = vit_macs(module.clip.width, len(visual.transformer.resblocks), module.clip.patch_size, 224)
    images = torch.randn(256, 3, 224, 224, device=device)
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        per_s = 256 / seconds(lambda: module.clip.patch_tokens(images), repeats=5, warmup=2)
    ceiling = rate * 1e12 / (2 * macs)
    figures["gpu.vitb16_forward_bf16_images_per_s"] = {"value": per_s, "unit": "images/s (224, batch 256)"}
    figures["gpu.vitb16_forward_ceiling_images_per_s"] = {
        "value": ceiling,
        "unit": "images/s at the matmul rate",
    }
    figures["gpu.vitb16_forward_fraction_of_ceiling"] = {"value": per_s / ceiling, "unit": "ratio"}

    batch = 1024
    big = torch.randn(batch, 3, 224, 224, device=device)
    texts, positives = caption_batch(batch, device)

    def live() -> None:
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
            tokens = module.clip.patch_tokens(big)
            text_emb = module.clip.encode_text(texts)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            trainable_step(module, tokens, text_emb, positives)

    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        stored = module.clip.patch_tokens(big).half(), module.clip.encode_text(texts).half()

    def cached() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            trainable_step(module, stored[0], stored[1], positives)

    figures["gpu.pacl_steps_per_s_batch_1024"] = {
        "value": 1 / seconds(live, repeats=3, warmup=1),
        "unit": "steps/s (frozen encoders live)",
    }
    figures["gpu.pacl_steps_per_s_batch_1024_cached"] = {
        "value": 1 / seconds(cached, repeats=3, warmup=1),
        "unit": "steps/s (from stored features)",
    }
    return figures
