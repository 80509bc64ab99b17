"""From class names to a prediction: synonym lists (a class takes the max over its names) and the background
rules of benchmarks whose class 0 means "none of the others" (VOC-21, Context-60, COCO-Object).

Background rules:
- ``text`` scores "background" like any class name; the max over a class's names is taken per window.
- ``threshold`` makes background every pixel whose top class probability, softmax(scale x cosine) over the
  other classes, is below a threshold (background gets no text; the softmax runs over class logits).
- ``entropy`` (PACL) makes background every pixel whose class-probability entropy exceeds a limit.
- ``softmax`` is the SCLIP lineage's rule (SCLIP ``clip_segmentor.py:148-170``, NACLIP ``naclip.py:139-153``):
  the cosines of every text, the background line's included, are averaged over windows; then softmax(scale x
  cosine) over all texts, the max over each class's texts, optionally SCLIP's area rule (every class but the
  first whose predicted area is at most ``area`` x the area of all such classes gets probability 0; only
  where there is a background class, as in the official configs), argmax
  (ties go to the lower class id), and pixels whose top probability is below ``threshold`` become the
  background class. Benchmarks without a background class only take the argmax.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

# rule -> which pixels are background, from class probabilities [B, C, H, W]; "text": background is scored as
# a class name like any other, so no rule applies
BACKGROUND_RULES: dict[str, Callable[[torch.Tensor, LabelSet], torch.Tensor] | None] = {
    "text": None,
    "threshold": lambda prob, labels: prob.amax(1) < labels.threshold,
    "entropy": lambda prob, labels: -(prob * prob.clamp_min(1e-12).log()).sum(1) > labels.entropy,
    "softmax": None,  # texts are kept apart until after the softmax: LabelSet.predict handles it
}


def read_synonyms(path: str | Path, num_classes: int, separator: str = ",") -> tuple[tuple[str, ...], ...]:
    """A class-name file: JSON (a list with one string or list of strings per class) or text (one class per
    line, synonyms separated by ``separator``, each name stripped). It must name every class, in the
    benchmark's order."""
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read class names from {path}: {exc}") from None
    if path.suffix == ".json":
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"{path}: not JSON ({exc})") from None
        entries = [[e] if isinstance(e, str) else e for e in raw] if isinstance(raw, list) else None
    else:
        entries = [line.split(separator) for line in text.splitlines() if line.strip()]
    if entries is None or not all(
        isinstance(e, list) and all(isinstance(n, str) for n in e) for e in entries
    ):
        raise ValueError(f"{path}: expected one entry (a name or a list of names) per class")
    classes = tuple(tuple(n.strip() for n in e if n.strip()) for e in entries)
    if len(classes) != num_classes or not all(classes):
        raise ValueError(
            f"{path} names {len(classes)} classes (or an empty one); the benchmark has {num_classes}"
        )
    return classes


@dataclass(frozen=True)
class LabelSet:
    """The texts to score, and how their logits become a class id per pixel."""

    classes: tuple[tuple[str, ...], ...]  # per class, its names (synonyms)
    background_index: int | None = None  # decided by a rule rather than by text when rule != "text"
    rule: str = "text"
    scale: float = 40.0  # logit scale of the probabilities the rules look at
    threshold: float = 0.1
    entropy: float = 1.5
    area: float | None = None  # softmax rule: SCLIP's area threshold (None: off)

    def __post_init__(self) -> None:
        if self.rule not in BACKGROUND_RULES:
            raise ValueError(f"unknown background rule '{self.rule}'; known: {', '.join(BACKGROUND_RULES)}")

    @classmethod
    def of(cls, names: Sequence[str] | Sequence[Sequence[str]], **kw) -> LabelSet:
        return cls(tuple((n,) if isinstance(n, str) else tuple(n) for n in names), **kw)

    @property
    def by_rule(self) -> bool:
        """Background decided by a rule instead of its own text."""
        return self.background_index is not None and self.rule in ("threshold", "entropy")

    @property
    def per_text(self) -> bool:
        """Logits stay one channel per text until ``predict`` (the softmax rule); else one per class."""
        return self.rule == "softmax"

    @property
    def scored(self) -> list[int]:
        """The classes that have texts, in order."""
        return [c for c in range(len(self.classes)) if not (self.by_rule and c == self.background_index)]

    @property
    def texts(self) -> tuple[str, ...]:
        return tuple(n for c in self.scored for n in self.classes[c])

    def class_logits(self, text_logits: torch.Tensor) -> torch.Tensor:
        """[B, len(texts), H, W] -> [B, len(scored), H, W]: each class the max over its names."""
        out, i = [], 0
        for c in self.scored:
            k = len(self.classes[c])
            out.append(text_logits[:, i : i + k].amax(1))
            i += k
        return torch.stack(out, 1)

    def window_logits(self, text_logits: torch.Tensor) -> torch.Tensor:
        """What a window's logits are averaged as: per text for the softmax rule, per class otherwise."""
        return text_logits if self.per_text else self.class_logits(text_logits)

    def predict(self, logits: torch.Tensor) -> torch.Tensor:
        """Class ids [B, H, W] from ``window_logits`` averaged over windows, scales and flips (cosines)."""
        if self.per_text:
            return self._predict_softmax(logits)
        scored = torch.tensor(self.scored, device=logits.device)
        top = logits.argmax(1)
        pred = scored[top]
        if not self.by_rule:
            return pred
        background = BACKGROUND_RULES[self.rule](torch.softmax(self.scale * logits.float(), dim=1), self)
        return torch.where(background, torch.full_like(pred, self.background_index), pred)

    def _predict_softmax(self, text_logits: torch.Tensor) -> torch.Tensor:
        prob = self.class_logits(torch.softmax(self.scale * text_logits.float(), dim=1))  # max over names
        if self.area is not None and self.background_index is not None:
            prob = prob.clone()
            for b in range(prob.shape[0]):
                top = prob[b].argmax(0)
                area = torch.bincount(top.flatten(), minlength=prob.shape[1])[1:].to(prob.dtype)
                keep = (area > self.area * area.sum()).to(prob.dtype)
                prob[b, 1:] *= keep[:, None, None]
        best = prob.amax(1)
        pred = prob.argmax(1)  # the first of equal maxima, as torch.argmax in the official code
        if self.background_index is not None and self.threshold > 0:
            pred = torch.where(best < self.threshold, torch.full_like(pred, self.background_index), pred)
        return pred
