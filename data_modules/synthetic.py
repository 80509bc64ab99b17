"""The embedded world: a small procedurally drawn dataset for tests, smoke runs and CPU experiments.

Every picture is an outdoor-ish scene drawn with numpy: an upper "stuff" region (sky or wall) and a
lower one (grass, water or sand) split by a wavy horizon, with one to four "thing" objects (ball,
box, tree, house, sun) drawn on top.  Each class has its own shape, colour family and texture, with
per-image jitter, so that a small model can learn the classes from captions alone.

The world is written in two real on-disk formats so that the very same readers serve it and the
real datasets:

* COCO captions (``coco/annotations/captions_{train,val}2017.json`` + ``coco/{train,val}2017``),
  five captions per image; each annotation carries an extra ``nouns`` field listing the canonical
  class names the caption mentions (PACL uses them as extra prompt texts).
* ADE20K (``ADEChallengeData2016/images/...`` + ``annotations/...``), 8-bit masks where class index
  ``i`` is stored as ``i + 1`` and ``0`` means unlabeled.

Generation is deterministic (byte-identical files for the same arguments, whatever the order in
which images are drawn) because every image gets its own RNG seeded by ``(seed, split, index)``.
"""

from __future__ import annotations

import functools
import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["CLASS_NAMES", "FORMAT", "VERSION", "generate", "is_complete", "render_image"]

#: Class names in index order.  Mask value ``i + 1`` is ``CLASS_NAMES[i]``; 0 is unlabeled (ADE20K).
CLASS_NAMES: tuple[str, ...] = (
    "sky",
    "wall",
    "grass",
    "water",
    "sand",
    "ball",
    "box",
    "tree",
    "house",
    "sun",
)

FORMAT = "lseg_pacl-synthetic"
VERSION = 2

_IDX = {name: i for i, name in enumerate(CLASS_NAMES)}
_UPPER = ("sky", "wall")
_LOWER = ("grass", "water", "sand")
_THINGS = ("ball", "box", "tree", "house", "sun")
_PLURAL = {"ball": "balls", "box": "boxes", "tree": "trees", "house": "houses", "sun": "suns"}
_NUMBERS = {1: "one", 2: "two", 3: "three", 4: "four"}
_SPLITS = (("train", 0, "train2017", "training"), ("val", 1, "val2017", "validation"))

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


# --------------------------------------------------------------------------------------------------
# Drawing
# --------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (y, x), float32, shape (size, size); cached since every image uses them."""
    c = np.arange(size, dtype=np.float32) + 0.5
    yy, xx = np.meshgrid(c, c, indexing="ij")
    yy.setflags(write=False)
    xx.setflags(write=False)
    return yy, xx


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Low-frequency noise in roughly [-1, 1]: a (cells+1)^2 random lattice, bilinearly upsampled."""
    lattice = rng.uniform(-1.0, 1.0, size=(cells + 1, cells + 1)).astype(np.float32)
    t = (np.arange(size, dtype=np.float32) + 0.5) * (cells / size)
    i0 = np.minimum(t.astype(np.int64), cells - 1)
    f = t - i0
    a = lattice[i0][:, i0]
    b = lattice[i0][:, i0 + 1]
    c = lattice[i0 + 1][:, i0]
    d = lattice[i0 + 1][:, i0 + 1]
    fy = f[:, None]
    fx = f[None, :]
    return (a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy


def _jitter(rng: np.random.Generator, base: Sequence[float], amount: float = 14.0) -> np.ndarray:
    """Per-image colour jitter around a class's base colour, so no class is a single pure colour."""
    return np.asarray(base, dtype=np.float32) + rng.normal(0.0, amount, size=3).astype(np.float32)


def _stuff_texture(name: str, rng: np.random.Generator, size: int, horizon: float) -> np.ndarray:
    """Full-frame (size, size, 3) float texture of a stuff class; it is later cut out by its region."""
    yy, xx = _grid(size)
    s = size / 64.0
    if name == "sky":  # vertical gradient, deeper blue at the top, paler near the horizon
        top = _jitter(rng, (45, 105, 215), 12)
        bottom = _jitter(rng, (150, 195, 245), 12)
        t = np.clip(yy / max(horizon, 1.0), 0.0, 1.0)[..., None]
        img = top * (1 - t) + bottom * t
        img = img + 6.0 * _smooth_noise(rng, size, 3)[..., None]
    elif name == "wall":  # grey bricks in a running bond, light mortar lines
        bh = rng.uniform(5.0, 8.0) * s
        bw = bh * rng.uniform(1.8, 2.6)
        row = np.floor(yy / bh)
        shift = (row % 2) * (bw / 2)
        col = np.floor((xx + shift) / bw)
        mortar = ((yy % bh) < max(1.0, 0.9 * s)) | (((xx + shift) % bw) < max(1.0, 0.9 * s))
        brick_id = (row * 97 + col * 13) % 17
        per_brick = rng.normal(0.0, 14.0, size=17).astype(np.float32)
        base = _jitter(rng, (125, 120, 122), 10)
        img = base + per_brick[brick_id.astype(np.int64)][..., None]
        img = np.where(mortar[..., None], _jitter(rng, (200, 198, 190), 6), img)
    elif name == "grass":  # yellow-green with vertical blade streaks and speckle
        base = _jitter(rng, (95, 165, 55), 12)
        streak = rng.normal(0.0, 1.0, size=size).astype(np.float32)[None, :]
        img = base + (10.0 * streak + 10.0 * _smooth_noise(rng, size, 4))[..., None]
        img = img + rng.normal(0.0, 9.0, size=(size, size, 1)).astype(np.float32) * np.array(
            [0.6, 1.0, 0.4], dtype=np.float32
        )
    elif name == "water":  # teal-blue with horizontal wave stripes
        base = _jitter(rng, (25, 95, 150), 12)
        f = rng.uniform(0.55, 0.9) / s
        phase = rng.uniform(0, 2 * np.pi)
        wave = np.sin(yy * f + 1.2 * np.sin(xx * 0.25 / s + phase))
        img = base + (22.0 * wave)[..., None] * np.array([0.6, 0.9, 1.0], dtype=np.float32)
        img = img + 5.0 * _smooth_noise(rng, size, 4)[..., None]
    elif name == "sand":  # beige with darker dots (pebbles) and gentle dunes
        base = _jitter(rng, (222, 198, 140), 10)
        img = base + (10.0 * _smooth_noise(rng, size, 3))[..., None]
        dots = rng.random((size, size)) < 0.06
        img = np.where(dots[..., None], img - np.float32(45.0), img)
    else:  # pragma: no cover - programming error
        raise ValueError(f"not a stuff class: {name}")
    img = img + rng.normal(0.0, 3.0, size=(size, size, 3)).astype(np.float32)
    return img.astype(np.float32)


def _coverage(sdf: np.ndarray) -> np.ndarray:
    """Anti-aliased coverage from a signed distance in pixels (negative inside)."""
    return np.clip(0.5 - sdf, 0.0, 1.0)


def _sdf_circle(cy: float, cx: float, r: float, size: int) -> np.ndarray:
    yy, xx = _grid(size)
    return np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2) - r


def _sdf_rect(y0: float, x0: float, y1: float, x1: float, size: int) -> np.ndarray:
    yy, xx = _grid(size)
    cy, cx, hh, hw = (y0 + y1) / 2, (x0 + x1) / 2, (y1 - y0) / 2, (x1 - x0) / 2
    return np.maximum(np.abs(yy - cy) - hh, np.abs(xx - cx) - hw)


def _sdf_triangle(
    apex: tuple[float, float], left: tuple[float, float], right: tuple[float, float], size: int
) -> np.ndarray:
    """Signed distance (max over edge half-planes) of a triangle given as (y, x) vertices."""
    yy, xx = _grid(size)
    pts = [apex, right, left]
    # Orientation so that "inside" is the negative side of every edge.
    area = (right[1] - apex[1]) * (left[0] - apex[0]) - (right[0] - apex[0]) * (left[1] - apex[1])
    sign = -1.0 if area > 0 else 1.0
    d = None
    for (ay, ax), (by, bx) in zip(pts, pts[1:] + pts[:1], strict=True):
        ey, ex = by - ay, bx - ax
        n = float(np.hypot(ey, ex)) or 1.0
        # Outward normal distance.
        dist = sign * (ex * (yy - ay) - ey * (xx - ax)) / n
        d = dist if d is None else np.maximum(d, dist)
    assert d is not None
    return d


class _Canvas:
    """RGB float image + label mask + instance map, painted with anti-aliased coverage.

    The label rule makes the mask follow the drawing order exactly: a pixel mostly covered
    (alpha >= 0.75) takes the new class, a partly covered one (the anti-aliasing band) becomes
    unlabeled unless it already belongs to the same class (parts of one object), and a barely
    covered one keeps its label.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.img = np.zeros((size, size, 3), dtype=np.float32)
        self.lab = np.zeros((size, size), dtype=np.uint8)
        self.inst = np.zeros((size, size), dtype=np.int32)

    def paint(self, alpha: np.ndarray, color: np.ndarray, cls: str, inst: int = 0) -> None:
        a = alpha[..., None]
        self.img = self.img * (1 - a) + np.broadcast_to(color, self.img.shape) * a
        value = _IDX[cls] + 1
        full = alpha >= 0.75
        band = (alpha > 0.25) & ~full & (self.lab != value)
        self.lab[full] = value
        self.lab[band] = 0
        self.inst[full] = inst
        self.inst[band] = -1


def _shade(rng: np.random.Generator, size: int, amount: float = 6.0) -> np.ndarray:
    return rng.normal(0.0, amount, size=(size, size, 1)).astype(np.float32)


def _draw_thing(
    cv: _Canvas, rng: np.random.Generator, name: str, inst: int, cy: float, cx: float, ext: float
) -> None:
    """Draw one object centred at (cy, cx) with overall extent ``ext`` pixels."""
    size = cv.size
    yy, xx = _grid(size)
    if name == "ball":  # filled disc in red/orange tones with a highlight
        r = ext / 2
        base = _jitter(rng, (225, 60 + rng.uniform(0, 70), 35), 12)
        hy, hx = cy - 0.35 * r, cx - 0.35 * r
        glow = np.clip(1.0 - np.sqrt((yy - hy) ** 2 + (xx - hx) ** 2) / max(r, 1.0), 0.0, 1.0)[..., None]
        color = base + 55.0 * glow**2 - 30.0 * (1 - glow) + _shade(rng, size, 4)
        cv.paint(_coverage(_sdf_circle(cy, cx, r, size)), color, name, inst)
    elif name == "box":  # brown square with a darker edge and a tape stripe
        h = ext / 2
        base = _jitter(rng, (155, 100, 50), 10)
        edge = base * 0.55
        cv.paint(
            _coverage(_sdf_rect(cy - h, cx - h, cy + h, cx + h, size)),
            edge + _shade(rng, size, 3),
            name,
            inst,
        )
        t = max(1.2, ext * 0.12)
        color = base + _shade(rng, size, 5)
        cv.paint(
            _coverage(_sdf_rect(cy - h + t, cx - h + t, cy + h - t, cx + h - t, size)), color, name, inst
        )
        tape = max(0.8, ext * 0.07)
        cv.paint(
            _coverage(_sdf_rect(cy - h + t, cx - tape, cy + h - t, cx + tape, size)), edge * 1.25, name, inst
        )
    elif name == "tree":  # dark green (two-tier) triangle canopy on a brown trunk
        top, bottom = cy - ext / 2, cy + ext / 2
        trunk_h = ext * 0.3
        tw = max(1.5, ext * 0.09)
        trunk = _jitter(rng, (105, 65, 30), 8)
        cv.paint(
            _coverage(_sdf_rect(bottom - trunk_h - 1, cx - tw, bottom, cx + tw, size)),
            trunk + _shade(rng, size, 3),
            name,
            inst,
        )
        green = _jitter(rng, (25, 100, 40), 10)
        leaves = green + _shade(rng, size, 8) + 10.0 * np.sin(xx * 1.7 + yy * 2.3)[..., None]
        half = ext * rng.uniform(0.33, 0.45)
        base_y = bottom - trunk_h
        mid_y = top + (base_y - top) * 0.45
        cv.paint(
            _coverage(_sdf_triangle((mid_y - 1, cx), (base_y, cx - half), (base_y, cx + half), size)),
            leaves,
            name,
            inst,
        )
        cv.paint(
            _coverage(
                _sdf_triangle(
                    (top, cx),
                    (mid_y + (base_y - mid_y) * 0.5, cx - half * 0.8),
                    (mid_y + (base_y - mid_y) * 0.5, cx + half * 0.8),
                    size,
                )
            ),
            leaves,
            name,
            inst,
        )
    elif name == "house":  # white body, dark maroon roof, dark door and window
        w = ext * rng.uniform(0.8, 1.0)
        body_top = cy - ext * 0.05
        bottom = cy + ext / 2
        wall = _jitter(rng, (238, 232, 224), 8)
        cv.paint(
            _coverage(_sdf_rect(body_top, cx - w / 2, bottom, cx + w / 2, size)),
            wall + _shade(rng, size, 3),
            name,
            inst,
        )
        roof = _jitter(rng, (120, 35, 60), 10)
        cv.paint(
            _coverage(
                _sdf_triangle(
                    (cy - ext / 2, cx), (body_top + 0.5, cx - w * 0.62), (body_top + 0.5, cx + w * 0.62), size
                )
            ),
            roof + _shade(rng, size, 4),
            name,
            inst,
        )
        dark = _jitter(rng, (60, 55, 75), 6)
        dw = max(1.0, w * 0.12)
        cv.paint(
            _coverage(_sdf_rect(bottom - (bottom - body_top) * 0.55, cx - dw, bottom, cx + dw, size)),
            dark,
            name,
            inst,
        )
        ws = max(1.0, w * 0.1)
        wy = body_top + (bottom - body_top) * 0.3
        wx = cx + w * 0.27 * (1 if rng.random() < 0.5 else -1)
        cv.paint(_coverage(_sdf_rect(wy - ws, wx - ws, wy + ws, wx + ws, size)), dark + 40.0, name, inst)
    elif name == "sun":  # saturated yellow disc in the sky
        r = ext / 2
        color = _jitter(rng, (255, 215, 35), 8) + _shade(rng, size, 3)
        cv.paint(_coverage(_sdf_circle(cy, cx, r, size)), color, name, inst)
    else:  # pragma: no cover - programming error
        raise ValueError(f"not a thing class: {name}")


def _min_pixels(size: int) -> int:
    """How many mask pixels make a class 'visible' (and so captionable): 8 at 64x64, scaled by area."""
    return max(4, round(8 * (size / 64) ** 2))


def render_image(rng: np.random.Generator, size: int = 64) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Draw one scene.

    Returns ``(rgb uint8 (size, size, 3), mask uint8 (size, size), visible)`` where ``visible`` maps
    each class visible in the mask (at least a few pixels) to its count: 1 for stuff, the number of
    visible instances for things.
    """
    s = size / 64.0
    yy, xx = _grid(size)
    cv = _Canvas(size)

    upper = _UPPER[int(rng.random() < 0.4)]  # sky 60%, wall 40%
    lower = _LOWER[int(rng.integers(len(_LOWER)))]
    h = rng.uniform(0.3, 0.7) * size
    amp = rng.uniform(0.5, 3.0) * s * (0.4 if lower == "water" else 1.0)
    horizon = h + amp * np.sin(xx[0] * rng.uniform(0.08, 0.25) / s + rng.uniform(0, 2 * np.pi))

    cv.paint(np.ones((size, size), np.float32), _stuff_texture(upper, rng, size, h), upper)
    below = np.clip(yy - horizon[None, :] + 0.5, 0.0, 1.0)
    # Stuff-stuff boundaries are labelled by majority (no unlabeled band between two regions).
    cv.img = cv.img * (1 - below[..., None]) + _stuff_texture(lower, rng, size, h) * below[..., None]
    cv.lab[below >= 0.5] = _IDX[lower] + 1

    n = int(rng.integers(1, 4))
    choices = _THINGS if upper == "sky" else _THINGS[:-1]
    names = [choices[int(rng.integers(len(choices)))] for _ in range(n)]
    if names.count("sun") > 1:  # one sun at most
        first = names.index("sun")
        names = [
            nm if (nm != "sun" or i == first) else _THINGS[int(rng.integers(4))] for i, nm in enumerate(names)
        ]

    objects: list[tuple[float, str, float, float, float]] = []
    for nm in names:
        if nm == "sun":
            ext = rng.uniform(12.0, 18.0) * s
            cy = rng.uniform(ext * 0.5, max(ext * 0.5 + 1, h - ext * 0.7))
            cx = rng.uniform(ext * 0.5, size - ext * 0.5)
            objects.append((-1e9, nm, cy, cx, ext))  # behind everything else
            continue
        ext = rng.uniform(16.0, 32.0) * s
        bottom = rng.uniform(min(h + 0.15 * ext, size - 2), size + 0.08 * ext)
        cy = bottom - ext / 2
        cx = rng.uniform(ext * 0.3, size - ext * 0.3)
        objects.append((bottom, nm, cy, cx, ext))
    objects.sort(key=lambda o: o[0])  # farther (higher) objects first, nearer ones on top
    for inst, (_, nm, cy, cx, ext) in enumerate(objects, start=1):
        _draw_thing(cv, rng, nm, inst, cy, cx, ext)

    thr = _min_pixels(size)
    counts = np.bincount(cv.lab.ravel(), minlength=len(CLASS_NAMES) + 1)
    inst_px = np.bincount(np.maximum(cv.inst.ravel(), 0), minlength=len(objects) + 1)
    visible: dict[str, int] = {}
    for i, cname in enumerate(CLASS_NAMES):
        if counts[i + 1] < thr:
            continue
        if cname in _THINGS:
            k = sum(1 for j, o in enumerate(objects, start=1) if o[1] == cname and inst_px[j] >= thr)
            visible[cname] = max(1, k)
        else:
            visible[cname] = 1

    rgb = np.clip(np.rint(cv.img), 0, 255).astype(np.uint8)
    return rgb, cv.lab, visible


# --------------------------------------------------------------------------------------------------
# Captions
# --------------------------------------------------------------------------------------------------


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


def _captions(rng: np.random.Generator, visible: dict[str, int], n: int = 5) -> list[tuple[str, list[str]]]:
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
            upper = next((c for c in _UPPER if c in chosen), None)
            lower = next((c for c in _LOWER if c in chosen), None)
            things = [(c, visible[c]) for c in present if c in _THINGS and c in chosen]
            order = rng.permutation(len(things))
            things = [things[i] for i in order]
            gen = _GENERATORS[int(rng.choice(len(_GENERATORS), p=_GEN_P))]
            text = gen(rng, upper, lower, things)
            if text not in seen:
                break
        seen.add(text)
        out.append((text, [c for c in CLASS_NAMES if c in chosen]))
    return out


# --------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------


def _manifest(seed: int, n_train: int, n_val: int, size: int) -> dict:
    return {
        "format": FORMAT,
        "version": VERSION,
        "seed": int(seed),
        "n_train": int(n_train),
        "n_val": int(n_val),
        "size": int(size),
        "classes": list(CLASS_NAMES),
    }


def _dump_json(obj: object) -> bytes:
    return (json.dumps(obj, indent=2, ensure_ascii=True) + "\n").encode("utf-8")


def _encode(arr: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    if fmt == "JPEG":
        Image.fromarray(arr, "RGB").save(buf, format="JPEG", quality=95, subsampling=0, optimize=False)
    else:
        Image.fromarray(arr, "L").save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def _dirs(root: Path) -> dict[str, tuple[Path, Path, Path]]:
    """Per split: (coco image dir, ADE image dir, ADE annotation dir)."""
    return {
        split: (
            root / "coco" / coco_name,
            root / "ADEChallengeData2016" / "images" / ade_name,
            root / "ADEChallengeData2016" / "annotations" / ade_name,
        )
        for split, _, coco_name, ade_name in _SPLITS
    }


def _check_args(seed: int, n_train: int, n_val: int, size: int) -> None:
    if n_train < 0 or n_val < 0:
        raise ValueError(f"n_train and n_val must be >= 0, got {n_train}, {n_val}")
    if size < 16:
        raise ValueError(f"size must be >= 16, got {size}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0 (it seeds numpy's SeedSequence), got {seed}")


def is_complete(out: str | Path, seed: int, n_train: int, n_val: int, size: int) -> bool:
    """True if ``out`` holds a finished world generated with exactly these parameters.

    The manifest is written last and the directory is renamed into place atomically, so a matching
    manifest plus the expected file counts means the world can be reused as is.
    """
    root = Path(out)
    try:
        manifest = json.loads((root / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    if manifest != _manifest(seed, n_train, n_val, size):
        return False
    required = [
        root / "classnames.json",
        root / "coco" / "annotations" / "captions_train2017.json",
        root / "coco" / "annotations" / "captions_val2017.json",
    ]
    if not all(p.is_file() for p in required):
        return False
    want = {"train": n_train, "val": n_val}
    for split, dirs in _dirs(root).items():
        for d in dirs:
            try:
                if len(os.listdir(d)) != want[split]:
                    return False
            except OSError:
                return False
    return True


def _write_split(root: Path, split: str, split_id: int, seed: int, n: int, first_id: int, size: int) -> None:
    coco_dir, ade_img_dir, ade_ann_dir = _dirs(root)[split]
    for d in (coco_dir, ade_img_dir, ade_ann_dir):
        d.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for index in range(n):
        rng = np.random.default_rng([seed, split_id, index])
        rgb, mask, visible = render_image(rng, size)
        caps = _captions(rng, visible)
        image_id = first_id + index
        stem = f"{image_id:012d}"
        jpg = _encode(rgb, "JPEG")
        (coco_dir / f"{stem}.jpg").write_bytes(jpg)
        (ade_img_dir / f"{stem}.jpg").write_bytes(jpg)
        (ade_ann_dir / f"{stem}.png").write_bytes(_encode(mask, "PNG"))
        images.append({"id": image_id, "file_name": f"{stem}.jpg", "width": size, "height": size})
        for k, (text, nouns) in enumerate(caps):
            annotations.append(
                {"id": (image_id - 1) * 5 + k + 1, "image_id": image_id, "caption": text, "nouns": nouns}
            )
    coco_name = "captions_train2017.json" if split == "train" else "captions_val2017.json"
    doc = {
        "info": {
            "description": f"{FORMAT} v{VERSION} ({split}), procedurally drawn",
            "version": str(VERSION),
            "year": 2017,
            "seed": int(seed),
        },
        "licenses": [],
        "images": images,
        "annotations": annotations,
    }
    ann_dir = root / "coco" / "annotations"
    ann_dir.mkdir(parents=True, exist_ok=True)
    (ann_dir / coco_name).write_bytes(_dump_json(doc))


def generate(out: str | Path, seed: int = 0, n_train: int = 4000, n_val: int = 200, size: int = 64) -> Path:
    """Write the synthetic world into ``out`` (COCO captions + ADE20K layouts) and return ``out``.

    * A complete world with the same parameters already at ``out`` is reused untouched.
    * A non-empty ``out`` that is not such a world raises ``FileExistsError``: user files are never
      overwritten or deleted.
    * Everything is written to a temporary sibling directory that is renamed into place at the end,
      so an interrupted run never leaves a half-written world at ``out``.
    """
    _check_args(seed, n_train, n_val, size)
    root = Path(out)
    if is_complete(root, seed, n_train, n_val, size):
        return root
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise FileExistsError(
            f"{root} exists and is not a synthetic world generated with seed={seed}, n_train={n_train}, "
            f"n_val={n_val}, size={size}; refusing to overwrite it (choose another directory or remove it yourself)"
        )
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    try:
        os.chmod(tmp, 0o755)
        (tmp / "classnames.json").write_bytes(_dump_json(list(CLASS_NAMES)))
        first_id = 1
        for split, split_id, _, _ in _SPLITS:
            n = n_train if split == "train" else n_val
            _write_split(tmp, split, split_id, seed, n, first_id, size)
            first_id += n
        (tmp / "manifest.json").write_bytes(_dump_json(_manifest(seed, n_train, n_val, size)))
        if root.is_dir() and not any(root.iterdir()):
            root.rmdir()  # an empty directory holds nothing of the user's; replace it
        try:
            os.rename(tmp, root)
        except OSError:
            if is_complete(root, seed, n_train, n_val, size):  # a concurrent run finished first
                shutil.rmtree(tmp, ignore_errors=True)
                return root
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root
