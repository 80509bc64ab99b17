"""``lseg-pacl data prepare pascal5i voc=VOCdevkit/VOC2012 [sbd=benchmark_RELEASE] [out=DIR] [ids=lists|all]
[lists=DIR]``: PASCAL-5i in the layout HSNet's ``data/pascal.py`` (lang-seg ``fewshot_data``) reads, the
"SBD-augmented" VOC masks ``VOC2012/SegmentationClassAug/<id>.png`` beside ``VOC2012/JPEGImages/<id>.jpg``.

- Written: ``<out>/SegmentationClassAug/<id>.png``, a single-channel 8-bit PNG (mode "L") holding the VOC
  class ids 0..20 (0 = background) and 255 on VOC's object boundaries, as HSNet/PFENet read it (pascal.py:
  73-78: fg = cls + 1, 255 = ignore). With ``out`` another folder than the VOC source, the image
  ``JPEGImages/<id>.jpg`` is hard-linked there too (copied where a link cannot be made).
- From: the user's VOC2012 (``VOCdevkit/VOC2012``: ``SegmentationClass/<id>.png`` palette PNGs, whose palette
  indices are the class ids, 255 on boundaries; ``JPEGImages``) and the SBD release (``benchmark_RELEASE/
  dataset/cls/<id>.mat``, MATLAB v5 files holding the struct ``GTcls`` with field ``Segmentation``, uint8
  0..20, no 255; read with scipy.io.loadmat, which reads arrays and never runs code).
- The rule (the usual "SegmentationClassAug" one): an image with a VOC ``SegmentationClass`` mask uses it,
  boundaries kept; any other image takes SBD's mask. The image is VOC's ``JPEGImages/<id>.jpg``, else SBD's
  ``dataset/img/<id>.jpg`` (then linked into ``<out>/JPEGImages``, in place too, so that HSNet finds it).
- Which ids: every image any PASCAL-5i fold list names (``{trn,val}/fold{0..3}.txt``, ``<img>__<cls>`` per
  line: 11,473 images), read from the lists shipped with the project (``data_modules/class_lists/fewshot/
  pascal``; ``lists=DIR`` reads another copy, e.g. HSNet's ``data/splits/pascal``); ``ids=all``: every id
  with a VOC mask or an SBD .mat.

The reference is the ``SegmentationClassAug`` HSNet's README points to (a Google Drive download). It cannot be
compared here; running this converter over a folder that already holds it compares every file (one whose
pixels, size or PNG mode differ is reported as a conflict and left alone), which is how to check it.

Differences, for inputs the releases do not hold: an id with neither mask, or with no image, is a bad input
(listed in the summary, nothing written); a mask that is not single-channel, holds values outside 0..20 (and
255 for VOC), or whose size differs from its image's, is a bad input too, and a bad VOC mask is never
replaced by SBD's silently.
"""

from __future__ import annotations

import filecmp
import os
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

from data_modules.bad_samples import BadSample
from data_modules.images import read_label_png
from data_modules.prepare.common import Summary, put, put_image, standard_out

NAME = "pascal5i"
FOLDER = "VOC2012"  # HSNet's ``<datapath>/VOC2012``
OPTIONS = {"voc": str, "sbd": str, "out": str, "ids": str, "lists": str}
REQUIRED = ("voc",)
USAGE = "pascal5i voc=VOCdevkit/VOC2012 [sbd=benchmark_RELEASE] [out=DIR] [ids=lists|all] [lists=DIR]"
LISTS = Path(__file__).resolve().parents[1] / "class_lists" / "fewshot" / "pascal"
LIST_SPLITS = ("trn", "val")
HSNET_LISTS = "fewshot_data/data/splits/pascal"
FOLDS = 4
NUM_CLASSES = 20
IGNORE = 255
SOURCE_LAYOUT = (
    "VOCdevkit/VOC2012/  (VOCtrainval_11-May-2012.tar)\n  JPEGImages/<id>.jpg\n"
    "  SegmentationClass/<id>.png  (palette PNGs: class ids 0..20, 255 on boundaries)\n"
    "benchmark_RELEASE/  (SBD, benchmark.tgz)\n  dataset/cls/<id>.mat  (GTcls.Segmentation, 0..20)\n"
    "  dataset/img/<id>.jpg"
)
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


def voc_dir(voc: str | Path) -> Path:
    """``voc`` may be ``VOCdevkit/VOC2012`` itself, ``VOCdevkit``, or the folder holding ``VOCdevkit``."""
    voc = Path(voc).expanduser()
    for cand in (voc / "VOCdevkit" / "VOC2012", voc / "VOC2012", voc):
        if (cand / "SegmentationClass").is_dir() or (cand / "JPEGImages").is_dir():
            return cand
    raise FileNotFoundError(
        f"no VOC2012 (JPEGImages/, SegmentationClass/) in {voc}. Expected layout:\n{SOURCE_LAYOUT}"
    )


def sbd_dir(sbd: str | Path) -> Path:
    """SBD's ``dataset`` folder (holding ``cls/``) from ``benchmark_RELEASE``, its ``dataset`` folder, or the
    folder holding ``benchmark_RELEASE``."""
    sbd = Path(sbd).expanduser()
    for cand in (sbd / "benchmark_RELEASE" / "dataset", sbd / "dataset", sbd):
        if (cand / "cls").is_dir():
            return cand
    raise FileNotFoundError(f"no SBD cls/ folder in {sbd}. Expected layout:\n{SOURCE_LAYOUT}")


def read_fold_lists(lists: str | Path | None = None) -> list[str]:
    """The image ids the PASCAL-5i fold lists name (``{trn,val}/fold{0..3}.txt``, ``<img>__<cls>`` lines),
    each once, sorted."""
    folder = Path(lists).expanduser() if lists else LISTS
    if (folder / "pascal").is_dir():  # HSNet's data/splits
        folder = folder / "pascal"
    files = [folder / s / f"fold{i}.txt" for s in LIST_SPLITS for i in range(FOLDS)]
    absent = [str(f) for f in files if not f.is_file()]
    if absent:
        where = (
            ""
            if lists
            else f" (the lists the project ships; lists=DIR reads another copy, e.g. {HSNET_LISTS})"
        )
        raise FileNotFoundError(f"PASCAL-5i fold lists missing{where}: {', '.join(absent)}")
    ids: set[str] = set()
    for f in files:
        for n, line in enumerate(f.read_text().splitlines(), 1):
            if not line.strip():
                continue
            img, sep, cls = line.strip().rpartition("__")
            if not sep or not img or not cls.isdigit() or not 1 <= int(cls) <= NUM_CLASSES:
                raise ValueError(f"{f}:{n}: expected '<img>__<cls>' with cls 1..{NUM_CLASSES}, got {line!r}")
            ids.add(img)
    return sorted(ids)


def read_sbd_segmentation(path: Path) -> np.ndarray:
    """``GTcls.Segmentation`` of an SBD ``cls/<id>.mat`` (loaded unsqueezed: a 1 x 1 struct array)."""
    mat = scipy.io.loadmat(str(path), variable_names=["GTcls"])
    gt = mat.get("GTcls")
    if gt is None or gt.dtype.names is None or "Segmentation" not in gt.dtype.names or gt.size != 1:
        raise KeyError("no struct GTcls with a field Segmentation")
    return np.asarray(gt["Segmentation"].flat[0])


def check_labels(arr: np.ndarray, allowed_ignore: bool) -> np.ndarray:
    """``arr`` as uint8 class ids; ValueError naming values outside 0..20 (and 255 when allowed)."""
    arr = np.asarray(arr)
    if arr.ndim != 2 or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ValueError(f"expected a 2-D numeric mask, got {arr.dtype} {arr.shape}")
    ok = (arr >= 0) & (arr <= NUM_CLASSES) & (arr == np.floor(arr))
    if allowed_ignore:
        ok |= arr == IGNORE
    if not ok.all():
        raise ValueError(
            f"values {np.unique(arr[~ok])[:8].tolist()} outside 0..{NUM_CLASSES}"
            + (f" and {IGNORE}" if allowed_ignore else "")
        )
    return arr.astype(np.uint8)


def image_size(path: Path) -> tuple[int, int] | None:
    """(H, W) of an image from its header, None when it cannot be read."""
    try:
        with Image.open(path) as img:
            return img.size[1], img.size[0]
    except _DECODE_ERRORS:
        return None


def link_or_copy(summary: Summary, src: Path, dst: Path) -> None:
    """``dst`` as a hard link to ``src`` (a copy, written atomically, where no link can be made); an existing
    ``dst`` with the same bytes is skipped, one with other bytes is a conflict and left alone."""
    if not dst.exists():
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dst)  # all or nothing: a reader never sees a partial file
            summary.written += 1
            return
        except FileExistsError:
            pass  # written meanwhile: compare it below
        except OSError:  # another file system, or links not supported
            put(summary, dst, src.read_bytes(), decoded=False)
            return
    if os.path.samefile(src, dst) or filecmp.cmp(src, dst, shallow=False):
        summary.skipped_same += 1
    else:
        summary.conflict(dst)


def all_ids(voc: Path, sbd: Path | None) -> list[str]:
    ids = {p.stem for p in (voc / "SegmentationClass").glob("*.png")}
    if sbd is not None:
        ids |= {p.stem for p in (sbd / "cls").glob("*.mat")}
    return sorted(ids)


def _mask(summary: Summary, file_id: str, voc: Path, sbd: Path | None) -> tuple[np.ndarray, Path] | None:
    """The id's mask (VOC's when it has one, else SBD's) and its file; None after listing a bad input."""
    voc_png = voc / "SegmentationClass" / f"{file_id}.png"
    if voc_png.is_file():
        try:
            return check_labels(read_label_png(voc_png), allowed_ignore=True), voc_png
        except BadSample as exc:
            summary.bad_input(voc_png, exc.reason, exc.detail)
        except ValueError as exc:
            summary.bad_input(voc_png, "label_out_of_range", str(exc))
        return None
    mat = sbd / "cls" / f"{file_id}.mat" if sbd is not None else None
    if mat is None or not mat.is_file():
        summary.bad_input(
            file_id,
            "missing_mask",
            f"neither {voc_png} nor " + (str(mat) if mat else "an SBD cls/<id>.mat (no sbd=)"),
        )
        return None
    try:
        seg = read_sbd_segmentation(mat)
    except Exception as exc:  # scipy.io raises many kinds for a damaged file: one listed bad input each
        summary.bad_input(mat, "bad_mask", f"{type(exc).__name__}: {exc}")
        return None
    try:
        return check_labels(seg, allowed_ignore=False), mat
    except ValueError as exc:
        summary.bad_input(mat, "label_out_of_range", str(exc))
        return None


def run(
    voc: str, sbd: str | None = None, out: str | None = None, ids: str = "lists", lists: str | None = None
) -> dict:
    if ids not in ("lists", "all"):
        raise ValueError(f"ids={ids}: expected ids=lists (the PASCAL-5i fold lists) or ids=all")
    source = voc_dir(voc)
    sbd_source = sbd_dir(sbd) if sbd else None
    file_ids = read_fold_lists(lists) if ids == "lists" else all_ids(source, sbd_source)
    target = standard_out(out, FOLDER) if out else source
    link_images = target.resolve() != source.resolve()
    summary = Summary(
        NAME,
        str(source) + (f" + {sbd_source}" if sbd_source else ""),
        str(target),
        "PASCAL-5i fold lists" if ids == "lists" else "all",
    )
    for file_id in file_ids:
        summary.seen()
        image = source / "JPEGImages" / f"{file_id}.jpg"
        sbd_image = sbd_source / "img" / f"{file_id}.jpg" if sbd_source is not None else None
        if not image.is_file() and sbd_image is not None and sbd_image.is_file():
            image = sbd_image
        if not image.is_file():
            summary.bad_input(image, "missing_file")
            continue
        got = _mask(summary, file_id, source, sbd_source)
        if got is None:
            continue
        mask, mask_file = got
        size = image_size(image)
        if size is None:
            summary.bad_input(image, "bad_image")
            continue
        if size != mask.shape:
            summary.bad_input(mask_file, "size_mismatch", f"mask {mask.shape}, image {size} (H, W)")
            continue
        put_image(summary, target / "SegmentationClassAug" / f"{file_id}.png", Image.fromarray(mask), "PNG")
        if link_images or image.parent != source / "JPEGImages":
            link_or_copy(summary, image, target / "JPEGImages" / f"{file_id}.jpg")
    return summary.as_dict()
