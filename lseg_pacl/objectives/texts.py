"""The texts of a caption batch: the captions, plus PACL's noun-prompt augmentation.

Noun prompts: each distinct noun named by the batch's captions, wrapped in PACL's 7 templates (or a random
subset of them), gives extra texts. It is a positive for every image whose caption names that noun, so images
sharing a noun are not pushed apart (the multi-positive form of InfoNCE, losses.py).
"""

from __future__ import annotations

import torch

from lseg_pacl.models.prompts import PACL_TEMPLATES


def noun_prompts(
    nouns: list[list[str]],
    per_noun: int = len(PACL_TEMPLATES),
    templates: tuple[str, ...] = PACL_TEMPLATES,
    generator: torch.Generator | None = None,
) -> tuple[list[str], torch.Tensor]:
    """Prompts for the distinct nouns of a batch and [B, len(prompts)] booleans (image b's caption names it).

    Each noun is wrapped in ``per_noun`` of the templates, drawn without replacement (all 7 by default, as in
    PACL's recipe).
    """
    if not 1 <= per_noun <= len(templates):
        raise ValueError(f"per_noun must be within 1..{len(templates)}, got {per_noun}")
    vocab = sorted({n for per_image in nouns for n in per_image})
    prompts: list[str] = []
    owner: list[int] = []
    for u, noun in enumerate(vocab):
        picks = (
            torch.randperm(len(templates), generator=generator)[:per_noun].tolist()
            if per_noun < len(templates)
            else range(per_noun)
        )
        prompts += [templates[k].format(noun) for k in picks]
        owner += [u] * per_noun
    index = {n: i for i, n in enumerate(vocab)}
    has_noun = torch.zeros(len(nouns), len(vocab), dtype=torch.bool)
    for b, per_image in enumerate(nouns):
        for n in per_image:
            has_noun[b, index[n]] = True
    return prompts, has_noun[:, torch.tensor(owner, dtype=torch.long)] if owner else has_noun


def caption_texts(
    batch: dict, templates_per_noun: int, generator: torch.Generator | None = None
) -> tuple[list[str], torch.Tensor]:
    """(texts, positives [B, len(texts)]): captions first (caption i belongs to image i), then noun prompts
    (none when ``templates_per_noun`` is 0); ``generator`` draws the templates (the same on every DDP
    rank)."""
    texts = list(batch["caption"])
    positives = torch.eye(len(texts), dtype=torch.bool)
    if templates_per_noun:
        prompts, has = noun_prompts(batch["nouns"], templates_per_noun, generator=generator)
        texts += prompts
        positives = torch.cat([positives, has], dim=1)
    return texts, positives
