"""``lseg-pacl data prepare coco20i coco=COCO2014 [splits=DIR] [out=DIR] [split=val2014|train2014]``:
COCO-20i in the layout HSNet's ``data/coco.py`` (lang-seg ``fewshot_data``) reads, from the user's COCO 2014
release.

- Written: ``<out>/annotations/<split>/<stem>.png``, one per image of ``annotations/instances_<split>.json``
  (``<stem>``: the image's file name without ``.jpg``), a single-channel 8-bit PNG holding per pixel the
  class index + 1 (1..80), 0 elsewhere. The index is the category's position among the 80 COCO thing
  categories in ascending category-id order (HSNet's class ids, the order of ``fewshot_coco.txt``); coco.py
  reads fg = class + 1 and ignores nothing (coco.py:81-83, 94-95). With ``out`` another folder than the
  source, the image ``<split>/<file>`` is hard-linked there too (copied where a link cannot be made).
- The mask of an instance: as pycocotools' ``COCO.annToMask`` makes it (coco.py ``annToRLE``): the polygons
  of ``segmentation`` are rasterised each as ``maskApi.c``'s ``rleFrPoly`` does (re-implemented here in numpy:
  coordinates upsampled 5x; about: a pixel is inside when its centre is) and merged; a list whose first entry
  has 4 numbers is read as boxes (``frPyObjects``' rule); ``{"counts": [...]}`` is an uncompressed
  column-major RLE, ``{"counts": "..."}`` a compressed one (``rleFrString``'s 6-bit LEB128-like code, decoded
  here). pycocotools is not needed (it is not a dependency).
- Painting: the image's annotations in the order the JSON lists them, crowd ones included, each instance's
  pixels set to its class (a later instance over an earlier one).
- With ``splits=DIR`` (the user's HSNet ``data/splits/coco``, or the ``fewshot_data`` / ``splits`` folder
  holding it): the fold pickles ``{trn,val}/fold{0..3}.pkl`` (dicts class id 0..79 -> list of
  ``'<split>/<file>.jpg'``) are read with the restricted unpickler (safe_pickle.py: plain data only; a pickle
  that asks to run code is refused and nothing is written) and written as plain text,
  ``<out>/splits/{trn,val}/fold{i}.txt``: one ``<class>\\t<name>`` line per entry, classes ascending (0-based,
  as in the pickle), names in the pickle's order.

The reference is HSNet's released masks (``train2014.zip`` / ``val2014.zip`` on Google Drive, README); the
script that made them is not published. Polygons and RLEs decode as pycocotools decodes them; where instances
overlap, the released masks may have been painted in another order (e.g. by area or by category), so pixels
on overlaps of different classes may differ. Running this converter over a folder that already holds the
released masks compares every file (one whose pixels, size or PNG mode differ is a conflict, left alone).

Differences, for inputs the release does not hold: an image whose annotations cannot be decoded (unknown
category, RLE size other than the image's, malformed counts), whose file is missing, or whose size differs
from the JSON's, is a bad input (listed, nothing written for it); an annotation naming no image is listed.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

from data_modules.prepare.common import InputError, Summary, put, put_image, standard_out
from data_modules.prepare.pascal5i import image_size, link_or_copy
from data_modules.prepare.safe_pickle import RefusedGlobal, load_data_pickle

NAME = "coco20i"
FOLDER = "COCO2014"  # HSNet's ``<datapath>/COCO2014``
OPTIONS = {"coco": str, "splits": str, "out": str, "split": str}
REQUIRED = ("coco",)
USAGE = "coco20i coco=COCO2014 [splits=DIR] [out=DIR] [split=val2014|train2014]"
SPLITS = ("val2014", "train2014")
LIST_SPLITS = ("trn", "val")
FOLDS = 4
NUM_CLASSES = 80
SCALE = 5.0  # maskApi.c rleFrPoly: ``double scale=5``
SOURCE_LAYOUT = (
    "COCO2014/\n  <split>/COCO_<split>_<n>.jpg  (train2014.zip, val2014.zip)\n"
    "  annotations/instances_<split>.json  (annotations_trainval2014.zip)"
)


# --- pycocotools' mask decoding (cocoapi common/maskApi.c, Simplified BSD), in numpy ----------------------


def poly_boundary(xy, h: int, w: int) -> np.ndarray:
    """The column-major flat positions where the mask toggles, as ``rleFrPoly`` computes them (before its
    sort and run-length step): the polygon's points scaled by 5 and rounded, each edge walked densely (one
    point per step of the longer axis), and one crossing kept per pixel column the boundary passes."""
    xy = np.asarray(xy, dtype=np.float64).ravel()
    k = len(xy) // 2
    if k == 0:
        raise ValueError("a polygon without points")
    x = np.trunc(SCALE * xy[0 : 2 * k : 2] + 0.5).astype(np.int64)  # C's (int) truncates toward zero
    y = np.trunc(SCALE * xy[1 : 2 * k : 2] + 0.5).astype(np.int64)
    x, y = np.append(x, x[0]), np.append(y, y[0])
    xs, xe, ys, ye = x[:-1], x[1:], y[:-1], y[1:]
    dx, dy = np.abs(xe - xs), np.abs(ys - ye)
    horiz = dx >= dy
    flip = (horiz & (xs > xe)) | (~horiz & (ys > ye))
    xs, xe = np.where(flip, xe, xs), np.where(flip, xs, xe)
    ys, ye = np.where(flip, ye, ys), np.where(flip, ys, ye)
    n = np.where(horiz, dx, dy)
    with np.errstate(divide="ignore", invalid="ignore"):  # 0/0 on a zero-length edge: its point is never used
        s = np.where(horiz, (ye - ys) / np.where(horiz, dx, 1), (xe - xs) / np.where(horiz, 1, dy))
    s = np.where(n == 0, 0.0, s)
    edge = np.repeat(np.arange(k), n + 1)
    starts = np.cumsum(n + 1) - (n + 1)
    d = np.arange(int((n + 1).sum())) - starts[edge]
    t = np.where(flip[edge], n[edge] - d, d)
    hz = horiz[edge]
    lin = np.trunc(np.where(hz, ys[edge], xs[edge]) + s[edge] * t + 0.5).astype(np.int64)
    u = np.where(hz, t + xs[edge], lin)
    v = np.where(hz, lin, t + ys[edge])
    # the y-boundary points, downsampled
    cur_u, prev_u, cur_v, prev_v = u[1:], u[:-1], v[1:], v[:-1]
    moved = cur_u != prev_u
    cur_u, prev_u, cur_v, prev_v = cur_u[moved], prev_u[moved], cur_v[moved], prev_v[moved]
    xd = np.where(cur_u < prev_u, cur_u, cur_u - 1).astype(np.float64)
    xd = (xd + 0.5) / SCALE - 0.5
    keep = (np.floor(xd) == xd) & (xd >= 0) & (xd <= w - 1)
    yd = np.minimum(cur_v, prev_v)[keep].astype(np.float64)
    yd = np.ceil(np.clip((yd + 0.5) / SCALE - 0.5, 0, h))
    return xd[keep].astype(np.int64) * h + yd.astype(np.int64)


def toggles_to_mask(positions: np.ndarray, h: int, w: int) -> np.ndarray:
    """The (h, w) mask whose column-major pixel q is on when an odd number of toggle positions are <= q: what
    ``rleFrPoly``'s sorted differences (zero-length runs merged) decode to."""
    flat = np.zeros(h * w, dtype=bool)
    pos = positions[(positions >= 0) & (positions < h * w)]
    if pos.size:
        lo = int(pos.min())
        par = (np.cumsum(np.bincount(pos - lo)) & 1).astype(bool)
        flat[lo : lo + par.size] = par
        if par[-1]:
            flat[lo + par.size :] = True
    return flat.reshape(w, h).T


def polygon_mask(xy, h: int, w: int) -> np.ndarray:
    return toggles_to_mask(poly_boundary(xy, h, w), h, w)


def box_mask(box, h: int, w: int) -> np.ndarray:
    """``rleFrBbox``: the box [x, y, w, h] as the polygon of its corners."""
    xs, ys, bw, bh = (float(c) for c in box)
    return polygon_mask([xs, ys, xs, ys + bh, xs + bw, ys + bh, xs + bw, ys], h, w)


def counts_from_string(s: str) -> list[int]:
    """``rleFrString``: run lengths from COCO's compressed RLE string (6 bits a character, characters 48..111,
    each count after the second stored as the difference to the count two before)."""
    data = s.encode("ascii") if isinstance(s, str) else bytes(s)
    counts: list[int] = []
    p = 0
    while p < len(data):
        x, k, more = 0, 0, True
        while more:
            if p >= len(data):
                raise ValueError("compressed RLE string ends inside a count")
            c = data[p] - 48
            if not 0 <= c < 64:
                raise ValueError(f"character {chr(data[p])!r} outside COCO's RLE alphabet")
            x |= (c & 0x1F) << 5 * k
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << 5 * k
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x & 0xFFFFFFFF)  # (uint) x
    return counts


def counts_to_mask(counts, h: int, w: int) -> np.ndarray:
    """``rleDecode``: alternating runs of 0 and 1, column-major."""
    cnts = np.asarray(counts, dtype=np.int64)
    if cnts.ndim != 1 or (cnts < 0).any() or int(cnts.sum()) != h * w:
        raise ValueError(
            f"RLE run lengths sum to {int(cnts.sum()) if cnts.ndim == 1 else '?'}, not {h} x {w}"
        )
    flat = np.repeat((np.arange(cnts.size) & 1).astype(bool), cnts)
    return flat.reshape(w, h).T


def annotation_mask(segm, h: int, w: int) -> np.ndarray:
    """The (h, w) bool mask of one annotation's ``segmentation``, as ``COCO.annToMask`` decodes it."""
    if isinstance(segm, list):
        if not segm or not isinstance(segm[0], list):
            raise ValueError("segmentation is an empty list or not a list of polygons")
        if len(segm[0]) == 4:  # frPyObjects: a list whose first entry has 4 numbers is a list of boxes
            parts = [box_mask(b, h, w) for b in segm]
        elif len(segm[0]) > 4:
            parts = [polygon_mask(p, h, w) for p in segm]
        else:
            raise ValueError(f"a polygon of {len(segm[0])} numbers")
        return np.logical_or.reduce(parts)
    if isinstance(segm, dict) and "counts" in segm and "size" in segm:
        if [int(v) for v in segm["size"]] != [h, w]:
            raise ValueError(f"RLE size {segm['size']}, image {h} x {w}")
        counts = segm["counts"]
        return counts_to_mask(counts if isinstance(counts, list) else counts_from_string(counts), h, w)
    raise ValueError("segmentation is neither polygons nor an RLE")


# --- the HSNet fold pickles --------------------------------------------------------------------------------


def splits_dir(splits: str | Path) -> Path:
    """The folder holding ``trn/`` and ``val/`` fold pickles: ``splits`` itself, or its ``coco``,
    ``splits/coco`` or ``data/splits/coco`` folder."""
    splits = Path(splits).expanduser()
    for cand in (splits, splits / "coco", splits / "splits" / "coco", splits / "data" / "splits" / "coco"):
        if any((cand / s).is_dir() for s in LIST_SPLITS) and any(cand.glob("*/fold*.pkl")):
            return cand
    raise FileNotFoundError(f"no HSNet COCO fold pickles ({{trn,val}}/fold{{0..3}}.pkl) in {splits}")


def read_fold_pickle(path: Path) -> dict[int, list[str]]:
    """A fold pickle's dict (class id 0..79 -> image names), read as data only; InputError otherwise."""
    try:
        data = load_data_pickle(path)
    except RefusedGlobal as exc:
        raise InputError(str(exc)) from None
    except Exception as exc:  # a damaged pickle raises many kinds
        raise InputError(f"{path}: not a readable pickle ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict):
        raise InputError(
            f"{path}: expected a dict class id -> list of image names, got {type(data).__name__}"
        )
    for cls, names in data.items():
        if type(cls) is not int or not 0 <= cls < NUM_CLASSES:
            raise InputError(f"{path}: class id {cls!r} is not an int in 0..{NUM_CLASSES - 1}")
        if not isinstance(names, list) or not all(
            isinstance(n, str) and n.strip() == n and n and "\t" not in n and "\n" not in n for n in names
        ):
            raise InputError(f"{path}: class {cls}: expected a list of image names")
    return data


def fold_text(data: dict[int, list[str]]) -> bytes:
    return "".join(f"{cls}\t{name}\n" for cls in sorted(data) for name in data[cls]).encode()


# --- the conversion ----------------------------------------------------------------------------------------


def coco_dir(coco: str | Path, split: str) -> Path:
    coco = Path(coco).expanduser()
    for cand in (coco / FOLDER, coco):
        if (cand / "annotations" / f"instances_{split}.json").is_file():
            return cand
    raise FileNotFoundError(
        f"no annotations/instances_{split}.json in {coco}. Expected layout:\n{SOURCE_LAYOUT}"
    )


def load_instances(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable COCO instances JSON ({exc})") from None
    if not all(isinstance(data.get(k), list) for k in ("images", "annotations", "categories")):
        raise InputError(f"{path}: expected lists 'images', 'annotations', 'categories'")
    return data


def class_indices(categories: list[dict], where: Path) -> dict[int, int]:
    """COCO category id -> class index + 1 (1..80), in ascending category-id order."""
    ids = sorted({int(c["id"]) for c in categories})
    if len(ids) != NUM_CLASSES:
        raise InputError(f"{where}: {len(ids)} categories; COCO-20i needs the {NUM_CLASSES} thing categories")
    return {cat: i + 1 for i, cat in enumerate(ids)}


def image_mask(anns: list[dict], h: int, w: int, classes: dict[int, int]) -> np.ndarray:
    """The class map of one image: its annotations painted in order, later over earlier."""
    out = np.zeros((h, w), dtype=np.uint8)
    for ann in anns:
        cat = ann.get("category_id")
        if cat not in classes:
            raise ValueError(f"annotation {ann.get('id')}: category_id {cat!r} is not one of the 80")
        try:
            out[annotation_mask(ann["segmentation"], h, w)] = classes[cat]
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ValueError(f"annotation {ann.get('id')}: {type(exc).__name__}: {exc}") from None
    return out


def _convert_splits(summary: Summary, splits: str, target: Path) -> None:
    folder = splits_dir(splits)
    files = [(s, i, folder / s / f"fold{i}.pkl") for s in LIST_SPLITS for i in range(FOLDS)]
    loaded = [(s, i, read_fold_pickle(p)) for s, i, p in files if p.is_file()]  # all read before any write
    for _, _, p in files:
        summary.seen()
        if not p.is_file():
            summary.bad_input(p, "missing_file")
    for s, i, data in loaded:
        put(summary, target / "splits" / s / f"fold{i}.txt", fold_text(data), decoded=False)


def run(coco: str, splits: str | None = None, out: str | None = None, split: str = "val2014") -> dict:
    if split not in SPLITS:
        raise ValueError(f"split={split}: expected one of {', '.join(SPLITS)}")
    source = coco_dir(coco, split)
    target = standard_out(out, FOLDER) if out else source
    link_images = target.resolve() != source.resolve()
    summary = Summary(NAME, str(source), str(target), split)
    if splits:
        _convert_splits(summary, splits, target)
    ann_file = source / "annotations" / f"instances_{split}.json"
    data = load_instances(ann_file)
    classes = class_indices(data["categories"], ann_file)
    images = {img.get("id"): img for img in data["images"] if isinstance(img, dict)}
    per_image: dict[object, list[dict]] = defaultdict(list)
    for ann in data["annotations"]:
        if ann.get("image_id") in images:
            per_image[ann["image_id"]].append(ann)
        else:
            summary.bad_input(
                ann_file, "unknown_image", f"annotation {ann.get('id')} names image {ann.get('image_id')!r}"
            )
    del data
    mask_dir = target / "annotations" / split
    for image_id, img in images.items():
        summary.seen()
        name, h, w = img.get("file_name"), img.get("height"), img.get("width")
        if (
            not isinstance(name, str)
            or not name.endswith(".jpg")
            or "/" in name
            or not all(isinstance(v, int) and v > 0 for v in (h, w))
        ):
            summary.bad_input(ann_file, "bad_image_entry", f"image {image_id!r}: {name!r} {h!r} x {w!r}")
            continue
        image = source / split / name
        if not image.is_file():
            summary.bad_input(image, "missing_file")
            continue
        size = image_size(image)
        if size != (h, w):
            summary.bad_input(
                image,
                "size_mismatch" if size else "bad_image",
                f"image {size}, JSON {(h, w)} (H, W)" if size else "",
            )
            continue
        try:
            mask = image_mask(per_image.get(image_id, []), h, w, classes)
        except ValueError as exc:
            summary.bad_input(image, "bad_annotation", str(exc))
            continue
        put_image(summary, mask_dir / f"{name[: -len('.jpg')]}.png", Image.fromarray(mask), "PNG")
        if link_images:
            link_or_copy(summary, image, target / split / name)
    return summary.as_dict()
