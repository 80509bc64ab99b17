"""Captions for the synthetic world, written from what a rendered scene shows.

Five styles (a full sentence, a short phrase, a name list, an object-style caption, a counting one) name
the classes visible in the mask, all of them or a subset, each caption with the canonical nouns it names,
so that captions are varied enough to train on and their nouns can serve as prompts.  Adjectives are
colour and material words only, never a class name, so a caption mentions exactly its nouns.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from data_modules.synthetic.render import CLASS_NAMES, LOWER, THINGS, UPPER

__all__ = ["captions"]

_PLURAL = {"ball": "balls", "box": "boxes", "tree": "trees", "house": "houses", "sun": "suns"}
_NUMBERS = {1: "one", 2: "two", 3: "three", 4: "four"}

# Adjectives per class: colour / material words only, never a class name (no "sandy", "sunny", ...).
_ADJ: dict[str, tuple[str, ...]] = {
    "sky": ("blue", "clear", "bright", "pale blue"),
    "wall": ("grey", "stone", "brick", "old"),
    "grass": ("green", "fresh", "lush", "short"),
    "water": ("calm", "blue", "dark", "rippled"),
    "sand": ("golden", "warm", "dry", "beige"),
    "ball": ("red", "orange", "round", "shiny"),
    "box": ("wooden", "brown", "cardboard", "square"),
    "tree": ("green", "tall", "leafy", "pine"),
    "house": ("white", "little", "small", "cozy"),
    "sun": ("yellow", "bright", "shining", "round"),
}


def _pick(rng: np.random.Generator, items: Sequence[str]) -> str:
    return items[int(rng.integers(len(items)))]


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _thing_np(
    rng: np.random.Generator, name: str, count: int, adj_p: float, numeric_one: bool = False
) -> str:
    adj = _pick(rng, _ADJ[name]) + " " if rng.random() < adj_p else ""
    if count == 1:
        det = "one" if numeric_one else _article(adj or name)
        return f"{det} {adj}{name}"
    return f"{_NUMBERS.get(count, str(count))} {adj}{_PLURAL[name]}"


def _join(parts: list[str]) -> str:
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def _stuff_np(rng: np.random.Generator, name: str, adj_p: float) -> str:
    adj = _pick(rng, _ADJ[name]) + " " if rng.random() < adj_p else ""
    return f"the {adj}{name}"


def _location(rng: np.random.Generator, upper: str | None, lower: str | None, adj_p: float) -> str:
    parts = []
    if lower is not None:
        rel = _pick(rng, ("by", "near", "beside") if lower == "water" else ("on", "on", "in"))
        parts.append(f"{rel} {_stuff_np(rng, lower, adj_p)}")
    if upper == "sky":
        parts.append(f"{_pick(rng, ('under', 'below'))} {_stuff_np(rng, upper, adj_p)}")
    elif upper == "wall":
        parts.append(f"{_pick(rng, ('in front of', 'against', 'next to'))} {_stuff_np(rng, upper, adj_p)}")
    if rng.random() < 0.2:
        parts.reverse()
    return " ".join(parts)


def _stuff_only(rng: np.random.Generator, upper: str | None, lower: str | None, adj_p: float) -> str:
    if upper and lower:
        u, lo = _stuff_np(rng, upper, adj_p), _stuff_np(rng, lower, adj_p)
        return _pick(rng, (f"{u} above {lo}", f"{lo} under {u}", f"{lo} and {u}", f"a view of {lo} and {u}"))
    name = upper or lower
    assert name is not None
    return _stuff_np(rng, name, adj_p)


def _finish(rng: np.random.Generator, text: str) -> str:
    if rng.random() < 0.5:
        text = text[0].upper() + text[1:]
    return text + ("." if rng.random() < 0.6 else "")


def _scene_text(
    rng: np.random.Generator,
    upper: str | None,
    lower: str | None,
    things: list[tuple[str, int]],
    adj_p: float,
    numeric_one: bool = False,
) -> str:
    """Things placed on the lower stuff and under/in front of the upper one; a sun goes in the sky."""
    ground = [(n, c) for n, c in things if n != "sun"]
    sun = [(n, c) for n, c in things if n == "sun"]
    sky_for_sun = bool(sun) and upper == "sky"
    loc_upper = None if sky_for_sun else upper
    if ground:
        body = _join([_thing_np(rng, n, c, adj_p, numeric_one) for n, c in ground])
        main = f"{body} {_location(rng, loc_upper, lower, adj_p)}".strip()
    elif loc_upper or lower:
        main = _stuff_only(rng, loc_upper, lower, adj_p)
    else:
        main = ""
    if sun:
        sun_text = _thing_np(rng, "sun", sun[0][1], adj_p, numeric_one)
        if sky_for_sun:
            sun_text += f" {_pick(rng, ('in', 'high in'))} {_stuff_np(rng, 'sky', adj_p)}"
        if main:
            main = f"{main} {_pick(rng, ('and', 'with'))} {sun_text}"
        else:
            main = sun_text
    return main


def _gen_sentence(
    rng: np.random.Generator, upper: str | None, lower: str | None, things: list[tuple[str, int]]
) -> str:
    """Full sentence: 'a red ball and a wooden box on the grass under a blue sky'."""
    prefix = _pick(rng, ("", "", "a photo of ", "an image of ", "a picture showing ", "a drawing of "))
    return _finish(rng, prefix + _scene_text(rng, upper, lower, things, 0.6))


def _gen_short(
    rng: np.random.Generator, upper: str | None, lower: str | None, things: list[tuple[str, int]]
) -> str:
    """Short scene phrase without adjectives: 'a tree by the water'."""
    return _scene_text(rng, upper, lower, things, 0.0)


def _gen_list(
    rng: np.random.Generator, upper: str | None, lower: str | None, things: list[tuple[str, int]]
) -> str:
    """Name list: 'ball, grass, sky'."""
    names = [(_PLURAL[n] if c > 1 and rng.random() < 0.5 else n) for n, c in things]
    names += [s for s in (upper, lower) if s is not None]
    order = rng.permutation(len(names))
    return ", ".join(names[i] for i in order)


def _gen_photo(
    rng: np.random.Generator, upper: str | None, lower: str | None, things: list[tuple[str, int]]
) -> str:
    """Object-style caption: 'a photo of a ball.' (a single object when the subset is one class)."""
    parts = [_thing_np(rng, n, c, 0.3) for n, c in things]
    parts += [_stuff_np(rng, s, 0.3) for s in (upper, lower) if s is not None]
    order = rng.permutation(len(parts))
    lead = _pick(
        rng, ("a photo of ", "a picture of ", "an image with ", "a rendering of ", "there is ", "this shows ")
    )
    body = _join([parts[i] for i in order])
    if lead == "there is " and body.split(" ", 1)[0] in ("two", "three", "four"):
        lead = "there are "
    return lead + body + "."


def _gen_count(
    rng: np.random.Generator, upper: str | None, lower: str | None, things: list[tuple[str, int]]
) -> str:
    """Counting caption: 'two balls on the sand', 'one tree and three boxes in front of the wall'."""
    if not things:
        return _gen_sentence(rng, upper, lower, things)
    return _finish(rng, _scene_text(rng, upper, lower, things, 0.2, numeric_one=True))


_GENERATORS: tuple[Callable[..., str], ...] = (_gen_sentence, _gen_short, _gen_list, _gen_photo, _gen_count)
_GEN_P = np.array([0.32, 0.2, 0.14, 0.17, 0.17])


def captions(rng: np.random.Generator, visible: dict[str, int], n: int = 5) -> list[tuple[str, list[str]]]:
    """``n`` varied captions (text, canonical nouns); ~70% name every visible class, the rest a subset."""
    present = [c for c in CLASS_NAMES if c in visible]
    out: list[tuple[str, list[str]]] = []
    seen: set[str] = set()
    for _ in range(n):
        for _attempt in range(8):
            if len(present) > 1 and rng.random() >= 0.7:
                k = int(rng.integers(1, len(present)))
                chosen = {present[i] for i in rng.choice(len(present), size=k, replace=False)}
            else:
                chosen = set(present)
            upper = next((c for c in UPPER if c in chosen), None)
            lower = next((c for c in LOWER if c in chosen), None)
            things = [(c, visible[c]) for c in present if c in THINGS and c in chosen]
            order = rng.permutation(len(things))
            things = [things[i] for i in order]
            gen = _GENERATORS[int(rng.choice(len(_GENERATORS), p=_GEN_P))]
            text = gen(rng, upper, lower, things)
            if text not in seen:
                break
        seen.add(text)
        out.append((text, [c for c in CLASS_NAMES if c in chosen]))
    return out
