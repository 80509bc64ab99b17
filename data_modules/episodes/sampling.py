"""Which (query, class) each episode is, in the official order, and the training draws.

Test episodes (lang-seg @ bb00b21, shot 0, as test_lseg_zs.py:273 builds them):

* PASCAL-5i: ``__len__`` 1000 and ``idx %= len(img_metadata)`` (pascal.py:29-33): the val fold list cycled in
  order (``cycled``).
* COCO-20i: ``__getitem__`` ignores the index and draws class, then query, with numpy's global RNG seeded by
  ``utils.fix_randseed(0)`` (test_lseg_zs.py:288, common/utils.py:8-17, coco.py:86-88); the test loader has no
  workers (data/dataset.py:38), so the 1000 draws happen in order in one process. ``coco_test_draws`` makes
  the very same ``choice`` calls on a ``np.random.RandomState(seed)`` (``replace=False`` draws through
  ``permutation(len)``, so the calls must be the same, not merely equivalent in distribution).
* FSS-1000: every ``.jpg`` of each class, classes in sorted order, files in ``sorted(glob)`` order
  (fss.py:127-140, the branch taken when shot != 1).
* synthetic: every (image, fold class present with at least ``MIN_FRACTION`` of the image's pixels), images
  in sorted order, then classes in id order (``present_classes``).

Training draws (split "train") are a function of (seed, epoch, index) alone (``episode_generator``, the
project's per-sample seeding, data_modules/samplers.py): the support is uniform over the class's other
entries, as the official rejection loops draw it (pascal.py:104-107, coco.py:99-102, fss.py:110-114); COCO
draws class, query and support as coco.py:86-102 does, from the generator instead of numpy's global RNG.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from data_modules.samplers import sample_generator

__all__ = [
    "MIN_FRACTION",
    "Episode",
    "by_class",
    "coco_test_draws",
    "coco_train_draw",
    "cycled",
    "draw_other",
    "episode_generator",
    "fss_listing",
    "present_classes",
]

# A synthetic (image, class) pair is an episode when the class covers at least 2% of the image (82 of the
# 64x64 world's 4096 pixels): a few boundary pixels are not an object to segment, and the official lists
# keep only objects of some size (PFENet's lists drop masks under 2x32x32 pixels).
MIN_FRACTION = 0.02


@dataclass(frozen=True)
class Episode:
    query: str  # the query's name: VOC id, "val2014/COCO_val2014_...jpg", "<class>/<n>.jpg", synthetic stem
    class_id: int  # 0-based, benchmark-wide


def cycled(entries: Sequence[Episode], n: int) -> list[Episode]:
    """Episode i = entries[i % len(entries)] (pascal.py:33)."""
    if not entries:
        raise ValueError("no episodes to cycle")
    return [entries[i % len(entries)] for i in range(n)]


def coco_test_draws(
    classwise: Mapping[int, Sequence[str]], class_ids: Sequence[int], n: int = 1000, seed: int = 0
) -> list[Episode]:
    """The official COCO-20i test episodes: ``n`` times ``choice(class_ids)`` then ``choice(classwise[c])``
    with ``replace=False``, on ``RandomState(seed)`` (= ``np.random.seed(seed)``, coco.py:87-88)."""
    rs = np.random.RandomState(seed)
    ids = list(class_ids)
    pools = {c: np.asarray(list(classwise.get(c, ()))) for c in ids}  # what choice() makes of the list anyway
    empty = [c for c in ids if len(pools[c]) == 0]
    if empty:
        raise ValueError(
            f"COCO-20i lists name no image for classes {empty}: the list file does not fit the fold"
        )
    out = []
    for _ in range(n):
        c = rs.choice(ids, 1, replace=False)[0]
        q = rs.choice(pools[int(c)], 1, replace=False)[0]
        out.append(Episode(str(q), int(c)))
    return out


def fss_listing(paths: Sequence[str]) -> list[str]:
    """The ``.jpg`` files among one class folder's ``glob('<folder>/*')`` in official order: ``sorted``, kept
    when ``basename.split('.')[1] == 'jpg'`` (fss.py:130-139)."""
    out = []
    for p in sorted(paths):
        parts = p.replace("\\", "/").rsplit("/", 1)[-1].split(".")
        if len(parts) > 1 and parts[1] == "jpg":
            out.append(p)
    return out


def present_classes(raw: np.ndarray, classes: Sequence[int], min_fraction: float = MIN_FRACTION) -> list[int]:
    """The ``classes`` (0-based; raw mask value = class + 1, the ADE20K format of the synthetic world) that
    cover at least ``min_fraction`` of the mask, in the order given."""
    counts = np.bincount(raw.reshape(-1).astype(np.int64), minlength=max(classes, default=0) + 2)
    need = min_fraction * raw.size
    return [c for c in classes if counts[c + 1] > 0 and counts[c + 1] >= need]


def by_class(episodes: Sequence[Episode]) -> dict[int, list[str]]:
    """{class: [query, ...]} in list order (pascal.py:145-152 ``build_img_metadata_classwise``)."""
    out: dict[int, list[str]] = {}
    for e in episodes:
        out.setdefault(e.class_id, []).append(e.query)
    return out


def episode_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """The random stream of training episode ``index`` in ``epoch`` (data_modules/samplers.py)."""
    return sample_generator(seed, (epoch, index))


def _pick(pool: Sequence[str], g: torch.Generator) -> str:
    return pool[int(torch.randint(len(pool), (), generator=g))]


def draw_other(pool: Sequence[str], query: str, g: torch.Generator) -> str:
    """An entry of ``pool`` other than ``query``, uniform over those entries (what the official loop "draw
    until it differs from the query" gives); ValueError when there is none."""
    for _ in range(64):
        s = _pick(pool, g)
        if s != query:
            return s
    others = [s for s in pool if s != query]  # only reached when nearly every entry is the query
    if not others:
        raise ValueError(f"no support other than the query {query}")
    return _pick(others, g)


def coco_train_draw(
    classwise: Mapping[int, Sequence[str]], class_ids: Sequence[int], g: torch.Generator
) -> tuple[Episode, str]:
    """(episode, support): class uniform over ``class_ids``, query uniform in its list, support uniform over
    the list's other entries (coco.py:86-102)."""
    c = int(class_ids[int(torch.randint(len(class_ids), (), generator=g))])
    query = _pick(classwise[c], g)
    return Episode(query, c), draw_other(classwise[c], query, g)
