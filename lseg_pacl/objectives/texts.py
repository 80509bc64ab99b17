"""The texts of a caption batch: the captions, plus PACL's noun-prompt augmentation.

Noun prompts: each distinct noun named by the batch's captions, wrapped in one of PACL's 7 templates (drawn at
random), is an extra text. It is a positive for every image whose caption names that noun, so images sharing a
noun are not pushed apart (the multi-positive form of InfoNCE, losses.py).
"""

from __future__ import annotations

import torch

from lseg_pacl.prompts import PACL_TEMPLATES


def noun_prompts(nouns: list[list[str]], templates: tuple[str, ...] = PACL_TEMPLATES
                 ) -> tuple[list[str], torch.Tensor]:
    """One templated prompt per distinct noun of the batch, and [B, U] booleans: image b's caption names noun u."""
    vocab = sorted({n for per_image in nouns for n in per_image})
    picks = torch.randint(len(templates), (len(vocab),)).tolist() if vocab else []
    prompts = [templates[k].format(n) for k, n in zip(picks, vocab, strict=True)]
    has = torch.zeros(len(nouns), len(vocab), dtype=torch.bool)
    index = {n: i for i, n in enumerate(vocab)}
    for b, per_image in enumerate(nouns):
        for n in per_image:
            has[b, index[n]] = True
    return prompts, has


def caption_texts(batch: dict, noun_prompts_on: bool) -> tuple[list[str], torch.Tensor]:
    """(texts, positives [B, len(texts)]): captions first (caption i belongs to image i), then noun prompts."""
    texts = list(batch["caption"])
    positives = torch.eye(len(texts), dtype=torch.bool)
    if noun_prompts_on:
        prompts, has = noun_prompts(batch["nouns"])
        texts += prompts
        positives = torch.cat([positives, has], dim=1)
    return texts, positives
