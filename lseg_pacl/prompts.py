"""Prompt templates for turning class names (or caption nouns) into texts."""

from __future__ import annotations

# The 7 "best" CLIP templates PACL wraps caption nouns and class names in (method notes, section 2).
PACL_TEMPLATES: tuple[str, ...] = (
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
)

TEMPLATE_SETS: dict[str, tuple[str, ...]] = {
    "raw": ("{}",),
    "pacl7": PACL_TEMPLATES,
}


def templates(name: str) -> tuple[str, ...]:
    """A named template set; the names are the choices of the ``eval.templates`` config key."""
    try:
        return TEMPLATE_SETS[name]
    except KeyError:
        raise ValueError(f"unknown template set '{name}'; known: {', '.join(TEMPLATE_SETS)}") from None
