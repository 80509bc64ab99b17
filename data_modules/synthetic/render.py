"""Scene rendering for the synthetic world: one RGB picture and its label mask per RNG.

Every picture is an outdoor-ish scene drawn with numpy: an upper "stuff" region (sky or wall) and a
lower one (grass, water or sand) split by a wavy horizon, with one to four "thing" objects (ball,
box, tree, house, sun) drawn on top.  Each class has its own shape, colour family and texture, with
per-image jitter, so that a small model can learn the classes from captions alone.  The label mask is
painted together with the picture, so it follows the drawing order (unlabeled only at object edges).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

__all__ = ["CLASS_NAMES", "LOWER", "THINGS", "UPPER", "render_image"]

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

_IDX = {name: i for i, name in enumerate(CLASS_NAMES)}
UPPER = ("sky", "wall")
LOWER = ("grass", "water", "sand")
THINGS = ("ball", "box", "tree", "house", "sun")


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

    upper = UPPER[int(rng.random() < 0.4)]  # sky 60%, wall 40%
    lower = LOWER[int(rng.integers(len(LOWER)))]
    h = rng.uniform(0.3, 0.7) * size
    amp = rng.uniform(0.5, 3.0) * s * (0.4 if lower == "water" else 1.0)
    horizon = h + amp * np.sin(xx[0] * rng.uniform(0.08, 0.25) / s + rng.uniform(0, 2 * np.pi))

    cv.paint(np.ones((size, size), np.float32), _stuff_texture(upper, rng, size, h), upper)
    below = np.clip(yy - horizon[None, :] + 0.5, 0.0, 1.0)
    # Stuff-stuff boundaries are labelled by majority (no unlabeled band between two regions).
    cv.img = cv.img * (1 - below[..., None]) + _stuff_texture(lower, rng, size, h) * below[..., None]
    cv.lab[below >= 0.5] = _IDX[lower] + 1

    n = int(rng.integers(1, 4))
    choices = THINGS if upper == "sky" else THINGS[:-1]
    names = [choices[int(rng.integers(len(choices)))] for _ in range(n)]
    if names.count("sun") > 1:  # one sun at most
        first = names.index("sun")
        names = [
            nm if (nm != "sun" or i == first) else THINGS[int(rng.integers(4))] for i, nm in enumerate(names)
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
        if cname in THINGS:
            k = sum(1 for j, o in enumerate(objects, start=1) if o[1] == cname and inst_px[j] >= thr)
            visible[cname] = max(1, k)
        else:
            visible[cname] = 1

    rgb = np.clip(np.rint(cv.img), 0, 255).astype(np.uint8)
    return rgb, cv.lab, visible
