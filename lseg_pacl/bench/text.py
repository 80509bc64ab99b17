"""Suite ``text``: the text side of zero-shot evaluation and training at ViT-B/16 scale (random weights).

- Truncation: the same prompts encoded at CLIP's full 77-token context and cut to the batch's longest prompt
  (models/clip.py; exactness is tested in tests/lseg_pacl/models/test_clip.py): seconds and their ratio.
- Class embeddings per label set: ADE20K's 150 names with raw names, PACL's 7 templates and (full) the 80
  ImageNet templates, first call (encoded) and second call (served from the per-label-set cache).
"""

from __future__ import annotations

import torch

from data_modules.benchmarks import BENCHMARKS
from lseg_pacl.bench.measure import seconds
from lseg_pacl.models.clip import ClipBackbone
from lseg_pacl.models.prompts import templates


def text_suite(full: bool, device: str = "cpu", model: str = "ViT-B-16-quickgelu") -> dict[str, dict]:
    figures: dict[str, dict] = {}
    clip = ClipBackbone(model, None).to(device).eval()
    names = tuple(BENCHMARKS["ade20k"].classes)
    prompts = [t.format(n) for n in names[:128] for t in templates("pacl7")[:1]]  # 128 prompts
    with torch.no_grad():
        full_ctx = seconds(lambda: clip.model.encode_text(clip.tokenizer(prompts).to(device)), repeats=1)
        cut = seconds(lambda: clip.encode_text(prompts), repeats=2)
    longest = int(clip.tokenize(prompts).shape[1])
    context = int(clip.model.positional_embedding.shape[0])
    figures["text.encode_s_full_context_128"] = {
        "value": full_ctx,
        "unit": f"s for 128 prompts, {context} tokens",
    }
    figures["text.encode_s_truncated_128"] = {"value": cut, "unit": f"s for 128 prompts, {longest} tokens"}
    figures["text.truncation_speedup"] = {"value": full_ctx / cut, "unit": "x"}
    for kind in ("raw", "pacl7", *(("imagenet80",) if full else ())):
        chosen = templates(kind)
        clip.text_cache.clear()
        first = seconds(lambda chosen=chosen: clip.class_embeddings(names, chosen), repeats=1, warmup=0)
        again = seconds(lambda chosen=chosen: clip.class_embeddings(names, chosen), repeats=3, warmup=0)
        figures[f"text.ade150_{kind}_s"] = {
            "value": first,
            "unit": f"s, {len(names) * len(chosen)} prompts, once",
        }
        figures[f"text.ade150_{kind}_cached_s"] = {"value": again, "unit": "s, served from the cache"}
    return figures
