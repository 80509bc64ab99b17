"""Builders that write small test datasets in the real on-disk layouts of the standard benchmarks.

Everything is real files (JPEG, PNG, TIFF, tar, MATLAB .mat, pickle) written with stdlib + numpy + PIL (and
scipy.io for .mat), deterministic given ``seed``.
Sizes are (H, W). Segmentation ids are NOT range-checked, so tests can write invalid values on purpose.
"""

from __future__ import annotations

import io
import json
import pickle
import tarfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

Size = tuple[int, int]
EXIF_ORIENTATION = 0x0112
# Raw stuffthingmaps ids that COCO-Stuff never uses; the other 171 of 0..181 map in order to train ids 0..170.
COCO_STUFF_UNUSED = (11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90)
TAR_MTIME = 1_700_000_000  # fixed, so shards are byte-identical across runs


def write_jpeg(
    path: str | Path, rgb: np.ndarray, exif_orientation: int | None = None, quality: int = 90
) -> None:
    """Write an H x W x 3 uint8 array as a JPEG, with an EXIF Orientation tag (0x0112) when given."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8))
    kwargs = {}
    if exif_orientation is not None:
        exif = Image.Exif()
        exif[EXIF_ORIENTATION] = int(exif_orientation)
        kwargs["exif"] = exif.tobytes()
    img.save(path, "JPEG", quality=quality, **kwargs)


def voc_palette() -> list[int]:
    """The standard 256-entry Pascal VOC colour palette, flattened to 768 ints."""
    out = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        out += [r, g, b]
    return out


def write_label_png(path: str | Path, ids: np.ndarray, mode: str = "L") -> None:
    """Write an H x W id mask as "L" (uint8), "P" (uint8 indices, VOC palette) or "I;16" (16-bit) PNG."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ids = np.asarray(ids)
    limit = {"L": 255, "P": 255, "I;16": 65535}.get(mode)
    if limit is None:
        raise ValueError(f"unsupported mode {mode!r}")
    if ids.ndim != 2 or ids.size == 0 or ids.min() < 0 or ids.max() > limit:
        raise ValueError(f"mask must be 2-D with values in 0..{limit} for mode {mode!r}")
    h, w = ids.shape
    if mode == "I;16":
        img = Image.frombytes("I;16", (w, h), ids.astype("<u2").tobytes())
    else:
        img = Image.frombytes(mode, (w, h), ids.astype(np.uint8).tobytes())
        if mode == "P":
            img.putpalette(voc_palette())
    img.save(path, "PNG")


def _cuts(length: int, k: int, min_w: int, rng: np.random.Generator) -> np.ndarray:
    """Band boundaries: k random band widths >= min_w that sum to length."""
    extra = rng.multinomial(length - k * min_w, np.full(k, 1.0 / k))
    return np.concatenate([[0], np.cumsum(extra + min_w)])


def label_grid(shape: Size, ids: Sequence[int], seed: int = 0) -> np.ndarray:
    """A mask of vertical or horizontal bands in which every id in ``ids`` appears at least once.

    Bands are >= 2 px wide where they fit (so a 1-px boundary cannot erase one); with more ids than
    either side can hold, ids are laid out in runs in raster order instead.
    Returns uint8 when all ids fit, else uint16.
    """
    h, w = shape
    uniq = list(dict.fromkeys(int(i) for i in ids))
    k = len(uniq)
    if k == 0 or k > h * w:
        raise ValueError(f"cannot place {k} ids in a {h}x{w} mask")
    if min(uniq) < 0 or max(uniq) > 65535:
        raise ValueError("ids must be in 0..65535")
    rng = np.random.default_rng(seed)
    order = np.asarray(uniq)[rng.permutation(k)]
    dtype = np.uint8 if max(uniq) <= 255 else np.uint16
    out = np.empty((h, w), dtype=dtype)
    for min_w in (2, 1):
        axes = [ax for ax, n in ((0, h), (1, w)) if k * min_w <= n]
        if axes:
            ax = axes[int(rng.integers(len(axes)))]
            cuts = _cuts(shape[ax], k, min_w, rng)
            for i, lab in enumerate(order):
                sl = slice(cuts[i], cuts[i + 1])
                if ax == 0:
                    out[sl, :] = lab
                else:
                    out[:, sl] = lab
            return out
    flat = order[np.arange(h * w) * k // (h * w)]
    return flat.reshape(h, w).astype(dtype)


def _rgb(size: Size, rng: np.random.Generator) -> np.ndarray:
    """Smooth random colour waves plus noise: compresses like a photo, not like flat colour."""
    h, w = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    chans = [
        127 + 70 * np.sin(rng.uniform(0.1, 0.6) * x + rng.uniform(0.1, 0.6) * y + rng.uniform(0, 2 * np.pi))
        for _ in range(3)
    ]
    img = np.stack(chans, axis=-1) + rng.normal(0, 15, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def _image_rng(seed: int, i: int) -> np.random.Generator:
    return np.random.default_rng([seed, i, 1])


def _mask_seed(seed: int, i: int) -> int:
    return seed * 1_000_003 + i


def _write_pairs(
    img_dir: Path,
    ann_dir: Path,
    stems: Sequence[str],
    size: Size,
    ids: Sequence[int],
    seed: int,
    mode: str = "L",
    boundary: bool = False,
) -> None:
    for i, stem in enumerate(stems):
        write_jpeg(img_dir / f"{stem}.jpg", _rgb(size, _image_rng(seed, i)))
        mask = label_grid(size, ids, seed=_mask_seed(seed, i))
        if boundary:
            edge = np.zeros(size, dtype=bool)
            edge[:, :-1] |= mask[:, :-1] != mask[:, 1:]
            edge[:-1, :] |= mask[:-1, :] != mask[1:, :]
            mask[edge] = 255
        write_label_png(ann_dir / f"{stem}.png", mask, mode=mode)


def make_ade(root: str | Path, split: str = "validation", n: int = 4, size: Size = (24, 32),
             ids: Sequence[int] | None = None, seed: int = 0) -> Path:
    """ADE20K (mmseg): ``ADEChallengeData2016/{images,annotations}/<split>/ADE_val_00000001.{jpg,png}``."""
    base = Path(root) / "ADEChallengeData2016"
    prefix = {"validation": "ADE_val", "training": "ADE_train"}.get(split, f"ADE_{split}")
    stems = [f"{prefix}_{i + 1:08d}" for i in range(n)]
    ids = (0, 1, 2, 150) if ids is None else ids
    _write_pairs(base / "images" / split, base / "annotations" / split, stems, size, ids, seed)
    return base


def _split_file(path: Path, names: Sequence[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{s}\n" for s in names))


def make_voc(root: str | Path, split: str = "val", n: int = 4, size: Size = (24, 32),
             ids: Sequence[int] | None = None, seed: int = 0, boundary: bool = True) -> Path:
    """Pascal VOC 2012: palette PNGs in ``SegmentationClass``; ``boundary`` draws 1-px 255 lines between
    bands."""
    base = Path(root) / "VOCdevkit" / "VOC2012"
    names = [f"2007_{33 + i:06d}" for i in range(n)]
    ids = (0, 1, 20) if ids is None else ids
    _write_pairs(base / "JPEGImages", base / "SegmentationClass", names, size, ids, seed, "P", boundary)
    _split_file(base / "ImageSets" / "Segmentation" / f"{split}.txt", names)
    return base


def make_context(root: str | Path, split: str = "val", n: int = 4, size: Size = (24, 32),
                 ids: Sequence[int] | None = None, seed: int = 0) -> Path:
    """Pascal Context (59 classes, mmseg): "L" PNGs in ``VOC2010/SegmentationClassContext``."""
    base = Path(root) / "VOCdevkit" / "VOC2010"
    names = [f"2008_{2 + i:06d}" for i in range(n)]
    ids = (0, 1, 59) if ids is None else ids
    _write_pairs(base / "JPEGImages", base / "SegmentationClassContext", names, size, ids, seed)
    _split_file(base / "ImageSets" / "SegmentationContext" / f"{split}.txt", names)
    return base


def coco_stuff_train_ids(raw: np.ndarray) -> np.ndarray:
    """MMSeg's conversion of raw stuffthingmaps ids to ``_labelTrainIds`` (0..170, else 255)."""
    lut = np.full(256, 255, dtype=np.uint8)
    used = [i for i in range(182) if i not in COCO_STUFF_UNUSED]
    lut[used] = np.arange(len(used), dtype=np.uint8)
    return lut[np.asarray(raw, dtype=np.uint8)]


def make_coco_stuff(root: str | Path, split: str = "val2017", n: int = 4, size: Size = (24, 32),
                    ids: Sequence[int] | None = None, seed: int = 0, train_ids: bool = False) -> Path:
    """COCO-Stuff 164k: raw ``annotations/<split>/<stem>.png``; ``train_ids`` adds
    ``<stem>_labelTrainIds.png``."""
    base = Path(root) / "coco_stuff164k"
    stems = [f"{139 + i:012d}" for i in range(n)]
    ann_dir = base / "annotations" / split
    ids = (0, 10, 12, 181, 255) if ids is None else ids
    _write_pairs(base / "images" / split, ann_dir, stems, size, ids, seed)
    if train_ids:
        for stem in stems:
            raw = np.asarray(Image.open(ann_dir / f"{stem}.png"))
            write_label_png(ann_dir / f"{stem}_labelTrainIds.png", coco_stuff_train_ids(raw))
    return base


_ADJ = ("small", "large", "red", "wooden", "old", "white", "busy", "quiet")
_NOUN = ("dog", "man", "woman", "car", "cat", "bus", "table", "horse", "boat", "bird")
_PLACE = ("street", "beach", "kitchen", "field", "river", "park", "table", "road")


def make_coco_captions(root: str | Path, split: str = "train2017", n: int = 6, size: Size = (24, 32),
                       seed: int = 0, captions_per_image: int = 5) -> Path:
    """COCO captions: ``coco/annotations/captions_<split>.json`` beside ``coco/<split>/<file_name>``.

    Image ids are sparse (100, 107, ...); annotations are shuffled, as in the real file.
    """
    base = Path(root) / "coco"
    rng = np.random.default_rng([seed, 2])
    h, w = size
    images, anns = [], []
    for i in range(n):
        image_id = 100 + 7 * i
        name = f"{image_id:012d}.jpg"
        write_jpeg(base / split / name, _rgb(size, _image_rng(seed, i)))
        images.append({"id": image_id, "file_name": name, "height": h, "width": w})
        for _ in range(captions_per_image):
            a, b, c = rng.choice(_ADJ), rng.choice(_NOUN), rng.choice(_PLACE)
            anns.append({"image_id": image_id, "caption": f"A {a} {b} near the {c}."})
    anns = [anns[j] for j in rng.permutation(len(anns))]
    for j, ann in enumerate(anns):
        ann["id"] = 1000 + j
    out = base / "annotations" / f"captions_{split}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"info": {}, "licenses": [], "images": images, "annotations": anns}))
    return base


def _tar_add(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), TAR_MTIME, 0o444
    info.uname = info.gname = "bigdata"  # what webdataset's TarWriter records
    tf.addfile(info, io.BytesIO(data))


def make_shards(out_dir: str | Path, n_shards: int = 8, per_shard: int = 5, size: Size = (24, 32),
                seed: int = 0, captions: Callable[[int], str | bytes] | None = None) -> list[Path]:
    """img2dataset webdataset shards ``00000.tar``...; members per sample: KEY.jpg, KEY.json, KEY.txt.

    KEY is the 9-digit global sample index. Members come in webdataset TarWriter's (sorted) order.
    ``captions(i)`` may return bytes, which are written raw to KEY.txt.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    h, w = size
    paths = []
    for s in range(n_shards):
        path = out_dir / f"{s:05d}.tar"
        with tarfile.open(path, "w") as tf:
            for i in range(s * per_shard, (s + 1) * per_shard):
                key = f"{i:09d}"
                cap = captions(i) if captions is not None else f"a photo of sample {i}"
                txt = cap if isinstance(cap, bytes) else cap.encode("utf-8")
                buf = io.BytesIO()
                Image.fromarray(_rgb(size, _image_rng(seed, i))).save(buf, "JPEG", quality=90)
                meta = {
                    "url": f"https://example.com/images/{key}.jpg",
                    "caption": txt.decode("utf-8", errors="replace"),
                    "key": key,
                    "status": "success",
                    "error_message": None,
                    "width": w,
                    "height": h,
                    "original_width": 4 * w,
                    "original_height": 4 * h,
                }
                _tar_add(tf, f"{key}.jpg", buf.getvalue())
                _tar_add(tf, f"{key}.json", json.dumps(meta).encode("utf-8"))
                _tar_add(tf, f"{key}.txt", txt)
        paths.append(path)
    return paths


def add_tar_member(tar_path: str | Path, name: str, data: bytes) -> None:
    """Append one member to an existing uncompressed tar."""
    with tarfile.open(tar_path, "a") as tf:
        _tar_add(tf, name, data)


def truncate(path: str | Path, keep: float = 0.5) -> None:
    """Cut a file to ``keep`` of its bytes (always at least one byte shorter)."""
    path = Path(path)
    data = path.read_bytes()
    path.write_bytes(data[: max(0, min(int(len(data) * keep), len(data) - 1))])


# --- COCO-Object, Cityscapes, and the 16-bit TIFF benchmarks (ADE20K-847, Pascal Context-459) ---------------

# cvt_coco_object.py (SCLIP b56bd30 L18-197): the 80 thing values of the raw stuffthingmaps (COCO id - 1) in
# COCO order; they become 1..80, every other value of the table (stuff 91..181) and 255 become 0.
COCO_THINGS_RAW = tuple(k for k in range(90) if k not in COCO_STUFF_UNUSED)
# cityscapesScripts helpers/labels.py:62-98: labelId -> trainId of the 19 evaluated classes (others -> 255)
CITYSCAPES_TRAIN_ID = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11,
                       25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}


def coco_object_train_ids(raw: np.ndarray) -> np.ndarray:
    """cvt_coco_object.py's ``_instanceTrainIds`` of raw stuffthingmaps ids (things 1..80, all else 0)."""
    lut = np.zeros(256, dtype=np.uint8)
    lut[list(COCO_THINGS_RAW)] = np.arange(1, 81, dtype=np.uint8)
    return lut[np.asarray(raw, dtype=np.uint8)]


def make_coco_object(root: str | Path, split: str = "val2017", n: int = 4, size: Size = (24, 32),
                     ids: Sequence[int] | None = None, seed: int = 0) -> Path:
    """COCO-Stuff 164k raw maps (``make_coco_stuff``) plus the converted ``<stem>_instanceTrainIds.png``."""
    base = make_coco_stuff(root, split, n, size, (0, 1, 89, 91, 181, 255) if ids is None else ids, seed)
    ann_dir = base / "annotations" / split
    for raw_file in sorted(ann_dir.glob("*.png")):
        if "TrainIds" not in raw_file.name:
            raw = np.asarray(Image.open(raw_file))
            write_label_png(ann_dir / f"{raw_file.stem}_instanceTrainIds.png", coco_object_train_ids(raw))
    return base


def cityscapes_train_ids(label_ids: np.ndarray) -> np.ndarray:
    lut = np.full(256, 255, dtype=np.uint8)
    for label_id, train_id in CITYSCAPES_TRAIN_ID.items():
        lut[label_id] = train_id
    return lut[np.asarray(label_ids, dtype=np.uint8)]


def write_png(path: str | Path, rgb: np.ndarray) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).save(path, "PNG")


def make_cityscapes(root: str | Path, split: str = "val", cities: Sequence[str] = ("frankfurt", "lindau"),
                    per_city: int = 2, size: Size = (16, 32), ids: Sequence[int] | None = None, seed: int = 0,
                    train_ids: bool = True, label_ids: bool = True) -> Path:
    """Cityscapes: ``leftImg8bit/<split>/<city>/<stem>_leftImg8bit.png`` (RGB PNG) and, in
    ``gtFine/<split>/<city>/``, ``<stem>_gtFine_labelIds.png`` (``ids`` are labelIds 0..33) and/or
    ``<stem>_gtFine_labelTrainIds.png`` (their trainIds by the official table)."""
    base = Path(root) / "cityscapes"
    ids = (0, 7, 8, 24, 26, 33) if ids is None else ids
    i = 0
    for city in cities:
        for j in range(per_city):
            stem = f"{city}_{j:06d}_000019"
            image = base / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png"
            write_png(image, _rgb(size, _image_rng(seed, i)))
            mask = label_grid(size, ids, seed=_mask_seed(seed, i))
            gt = base / "gtFine" / split / city
            if label_ids:
                write_label_png(gt / f"{stem}_gtFine_labelIds.png", mask)
            if train_ids:
                write_label_png(gt / f"{stem}_gtFine_labelTrainIds.png", cityscapes_train_ids(mask))
            i += 1
    return base


def write_label_tiff(path: str | Path, ids: np.ndarray) -> None:
    """An H x W id mask as a uint16 TIFF (PIL mode "I;16"), as CAT-Seg's prepare scripts write them."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ids = np.asarray(ids)
    if ids.ndim != 2 or ids.size == 0 or ids.min() < 0 or ids.max() > 65535:
        raise ValueError("mask must be 2-D with values in 0..65535")
    Image.fromarray(ids.astype(np.uint16)).save(path, "TIFF")


def make_ade847(root: str | Path, split: str = "validation", n: int = 3, size: Size = (24, 32),
                ids: Sequence[int] | None = None, seed: int = 0) -> Path:
    """ADE20K-847 (CAT-Seg): ``ADE20K_2021_17_01/images_detectron2/<split>/ADE_val_*.jpg`` and
    ``annotations_detectron2/<split>/ADE_val_*.tif`` (uint16, 65535 = ignore)."""
    base = Path(root) / "ADE20K_2021_17_01"
    ids = (0, 255, 846, 65535) if ids is None else ids
    for i in range(n):
        stem = f"ADE_val_{i + 1:08d}"
        write_jpeg(base / "images_detectron2" / split / f"{stem}.jpg", _rgb(size, _image_rng(seed, i)))
        write_label_tiff(base / "annotations_detectron2" / split / f"{stem}.tif",
                         label_grid(size, ids, seed=_mask_seed(seed, i)))
    return base


def make_pc459(root: str | Path, split: str = "val", n: int = 3, size: Size = (24, 32),
               ids: Sequence[int] | None = None, seed: int = 0) -> Path:
    """Pascal Context-459 (CAT-Seg): ``VOCdevkit/VOC2010/JPEGImages/<id>.jpg`` and
    ``annotations_detectron2/pc459_<split>/<id>.tif`` (uint16, 65535 = ignore)."""
    base = Path(root) / "VOCdevkit" / "VOC2010"
    ids = (0, 255, 458, 65535) if ids is None else ids
    for i in range(n):
        name = f"2008_{2 + i:06d}"
        write_jpeg(base / "JPEGImages" / f"{name}.jpg", _rgb(size, _image_rng(seed, i)))
        write_label_tiff(base / "annotations_detectron2" / f"pc459_{split}" / f"{name}.tif",
                         label_grid(size, ids, seed=_mask_seed(seed, i)))
    return base


def ade_seg_rgb(classes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An ADE20K ``*_seg.png`` array for object class ids: R / 10 * 256 + G is the class (R's last decimal
    digit and B, the instance, are noise here)."""
    classes = np.asarray(classes, dtype=np.int64)
    if classes.min() < 0 or classes.max() > 25 * 256 + 255:
        raise ValueError("ADE class ids must be in 0..6655 to fit R / 10 * 256 + G")
    r = (classes // 256) * 10 + rng.integers(0, 10, classes.shape)
    g = classes % 256
    b = rng.integers(0, 256, classes.shape)
    return np.stack([r, g, b], axis=-1).astype(np.uint8)


def make_ade20k_full_release(root: str | Path, samples: Sequence[tuple[str, Size, Sequence[int]]],
                             seed: int = 0, protocol: int = 4, index: dict | None = None) -> Path:
    """The original ADE20K_2021_17_01 release, small: per (file name, size, ADE object ids) an image and its
    ``_seg.png`` under ``images/ADE/<validation|training>/<scene>/``, and ``index_ade20k.pkl``, a pickled dict
    whose ``folder`` (relative to the folder holding the release) and ``filename`` lists name them, with numpy
    arrays beside them as in the real index. ``index`` replaces the pickled object."""
    base = Path(root) / "ADE20K_2021_17_01"
    folders, names = [], []
    for i, (name, size, classes) in enumerate(samples):
        split = "validation" if name.split("_")[1] == "val" else "training"
        folder = f"ADE20K_2021_17_01/images/ADE/{split}/scene_{i % 2}"
        rng = np.random.default_rng([seed, i, 3])
        write_jpeg(Path(root) / folder / name, _rgb(size, _image_rng(seed, i)))
        seg = ade_seg_rgb(label_grid(size, classes, seed=_mask_seed(seed, i)), rng)
        write_png(Path(root) / folder / name.replace(".jpg", "_seg.png"), seg)
        folders.append(folder)
        names.append(name)
    if index is None:
        index = {
            "filename": names,
            "folder": folders,
            "objectnames": np.array(["wall", "building, edifice"], dtype=object),
            "objectPresence": np.zeros((2, len(names)), dtype=np.uint16),
            "scene": [f"scene_{i % 2}" for i in range(len(names))],
            "description": {"filename": "file name", "folder": "folder of the file"},
        }
    base.mkdir(parents=True, exist_ok=True)
    with open(base / "index_ade20k.pkl", "wb") as f:
        pickle.dump(index, f, protocol=protocol)
    return base


def make_pascal_context_mats(root: str | Path, ids: Sequence[str], size: Size = (24, 32),
                             labels: Sequence[int] | None = None, seed: int = 0) -> Path:
    """Pascal Context's release for ``prepare pc459``: ``VOCdevkit/VOC2010/JPEGImages/<id>.jpg`` and
    ``trainval/<id>.mat`` holding ``LabelMap`` (uint16, 0 = unlabeled, 1..459), written with scipy.io."""
    import scipy.io

    base = Path(root) / "VOCdevkit" / "VOC2010"
    labels = (0, 1, 256, 459) if labels is None else labels
    (base / "trainval").mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(ids):
        write_jpeg(base / "JPEGImages" / f"{name}.jpg", _rgb(size, _image_rng(seed, i)))
        label_map = label_grid(size, labels, seed=_mask_seed(seed, i)).astype(np.uint16)
        scipy.io.savemat(base / "trainval" / f"{name}.mat", {"LabelMap": label_map})
    return base
