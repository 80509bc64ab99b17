"""Prompt templates for turning class names (or caption nouns) into texts."""

from __future__ import annotations

# The 7 "best" CLIP templates PACL wraps caption nouns and class names in (docs/methods.md#pacl).
PACL_TEMPLATES: tuple[str, ...] = (
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
)


def imagenet_templates() -> tuple[str, ...]:
    """CLIP's 80 ImageNet templates, as open_clip ships them (the SCLIP-style protocol's prompt set)."""
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

    return tuple(t("{}") for t in OPENAI_IMAGENET_TEMPLATES)


TEMPLATE_SETS: dict[str, tuple[str, ...]] = {
    "raw": ("{}",),
    "pacl7": PACL_TEMPLATES,
    "imagenet80": imagenet_templates(),
}


def templates(name: str) -> tuple[str, ...]:
    """A named template set; the names are the choices of the ``eval.templates`` config key."""
    try:
        return TEMPLATE_SETS[name]
    except KeyError:
        raise ValueError(f"unknown template set '{name}'; known: {', '.join(TEMPLATE_SETS)}") from None
