"""Transcriptions of the official few-shot loaders (isl-org/lang-seg @ bb00b21, fewshot_data/data/*.py),
written out here line by line as the reference the episode tests compare with, and builders of a tiny fake
HSNet layout in the real file formats."""

from __future__ import annotations

import glob
import os
import pickle
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

MIRROR = Path("/work/.mirror/isl-org+lang-seg/repo")


# --- the official code, transcribed ------------------------------------------------------------------------
def official_transform(size, mean, std):
    """data/dataset.py:31-33."""
    from torchvision import transforms

    return transforms.Compose(
        [transforms.Resize(size=(size, size)), transforms.ToTensor(), transforms.Normalize(mean, std)]
    )


def official_pascal_metadata(list_dir, split, fold, nfolds=4):
    """pascal.py:121-143 build_img_metadata, reading ``<list_dir>/pascal/<split>/fold<i>.txt``."""

    def read_metadata(split, fold_id):
        fold_n_metadata = os.path.join(list_dir, "pascal/%s/fold%d.txt" % (split, fold_id))  # noqa: UP031
        with open(fold_n_metadata) as f:
            fold_n_metadata = f.read().split("\n")[:-1]
        fold_n_metadata = [[data.split("__")[0], int(data.split("__")[1]) - 1] for data in fold_n_metadata]
        return fold_n_metadata

    img_metadata = []
    if split == "trn":
        for fold_id in range(nfolds):
            if fold_id == fold:
                continue
            img_metadata += read_metadata(split, fold_id)
    else:
        img_metadata = read_metadata(split, fold)
    return img_metadata


def official_pascal_test_order(img_metadata):
    """pascal.py:29-34: __len__ 1000 and idx %= len(img_metadata)."""
    out = []
    for idx in range(1000):
        idx %= len(img_metadata)
        query_name, class_sample = img_metadata[idx]
        out.append((query_name, class_sample))
    return out


def official_coco_test_order(classwise, class_ids, n=1000):
    """test_lseg_zs.py:288 fix_randseed(0), then coco.py:86-88 for each of the n episodes (shot 0)."""
    np.random.seed(0)
    out = []
    for _ in range(n):
        class_sample = np.random.choice(class_ids, 1, replace=False)[0]
        query_name = np.random.choice(classwise[class_sample], 1, replace=False)[0]
        out.append((str(query_name), int(class_sample)))
    return out


def official_fss_metadata(base_path, categories, split):
    """fss.py:22-24 (sorted categories), 127-140 build_img_metadata with shot 0, 89-95 class ids."""
    categories = sorted(categories)
    img_metadata = []
    for cat in categories:
        img_paths = sorted([path for path in glob.glob("%s/*" % os.path.join(base_path, cat))])  # noqa: UP031
        for img_path in img_paths:
            if os.path.basename(img_path).split(".")[1] == "jpg":
                img_metadata.append(img_path)
    out = []
    for query_name in img_metadata:
        class_sample = categories.index(query_name.split("/")[-2])
        class_sample += {"trn": 0, "val": 520, "test": 760}[split]
        out.append((query_name, class_sample))
    return out


def official_pascal_item(datapath, query_name, class_sample, size, mean=(0.5,) * 3, std=(0.5,) * 3):
    """pascal.py:32-40, 73-97 with shot 0: (query_img, query_mask, query_ignore_idx)."""
    transform = official_transform(size, mean, std)
    query_img = Image.open(os.path.join(datapath, "VOC2012/JPEGImages/", query_name) + ".jpg")
    query_cmask = torch.tensor(
        np.array(Image.open(os.path.join(datapath, "VOC2012/SegmentationClassAug/", query_name) + ".png"))
    )
    query_img = transform(query_img)
    query_cmask = F.interpolate(
        query_cmask.unsqueeze(0).unsqueeze(0).float(), query_img.size()[-2:], mode="nearest"
    ).squeeze()
    mask = query_cmask.float()
    boundary = (mask / 255).floor()
    mask[mask != class_sample + 1] = 0
    mask[mask == class_sample + 1] = 1
    return query_img, mask, boundary


def official_coco_item(base_path, query_name, class_sample, size, mean=(0.5,) * 3, std=(0.5,) * 3):
    """coco.py:32-40, 81-95 with shot 0: (query_img, query_mask)."""
    transform = official_transform(size, mean, std)
    query_img = Image.open(os.path.join(base_path, query_name)).convert("RGB")
    mask_path = os.path.join(base_path, "annotations", query_name)
    query_mask = torch.tensor(np.array(Image.open(mask_path[: mask_path.index(".jpg")] + ".png")))
    query_mask[query_mask != class_sample + 1] = 0
    query_mask[query_mask == class_sample + 1] = 1
    query_img = transform(query_img)
    query_mask = query_mask.float()
    query_mask = F.interpolate(
        query_mask.unsqueeze(0).unsqueeze(0).float(), query_img.size()[-2:], mode="nearest"
    ).squeeze()
    return query_img, query_mask


def official_fss_item(query_name, size, mean=(0.5,) * 3, std=(0.5,) * 3):
    """fss.py:34-39, 61-87 with shot 0: (query_img, query_mask)."""
    transform = official_transform(size, mean, std)
    query_img = Image.open(query_name).convert("RGB")
    query_id = query_name.split("/")[-1].split(".")[0]
    query_name = os.path.join(os.path.dirname(query_name), query_id) + ".png"
    mask = torch.tensor(np.array(Image.open(query_name).convert("L")))
    mask[mask < 128] = 0
    mask[mask >= 128] = 1
    query_img = transform(query_img)
    query_mask = F.interpolate(
        mask.unsqueeze(0).unsqueeze(0).float(), query_img.size()[-2:], mode="nearest"
    ).squeeze()
    return query_img, query_mask


# --- a tiny fake HSNet layout -----------------------------------------------------------------------------
def _rgb(rng, h, w):
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def _blob_mask(rng, h, w, fg, others=(), boundary=True):
    """A mask with a rectangle of each of ``others`` and then of ``fg``, 255 rings round them."""
    m = np.zeros((h, w), dtype=np.uint8)
    for k, value in enumerate((*others, fg)):
        y0, x0 = rng.integers(0, h // 2), rng.integers(0, w // 2)
        y1, x1 = y0 + h // 3 + k, x0 + w // 3 + k
        if boundary:
            m[max(y0 - 1, 0) : y1 + 1, max(x0 - 1, 0) : x1 + 1] = 255
        m[y0:y1, x0:x1] = value
    return m


def write_voc(root: Path, entries, seed=0) -> None:
    """VOC2012/JPEGImages/<id>.jpg, SegmentationClassAug/<id>.png (palette), non-square, per (id, class)."""
    rng = np.random.default_rng(seed)
    (root / "VOC2012" / "JPEGImages").mkdir(parents=True, exist_ok=True)
    (root / "VOC2012" / "SegmentationClassAug").mkdir(parents=True, exist_ok=True)
    for k, (name, cls) in enumerate(entries):
        h, w = (23 + 7 * k, 37 + 3 * k) if k % 2 else (41 + k, 29 + 2 * k)
        Image.fromarray(_rgb(rng, h, w)).save(root / "VOC2012" / "JPEGImages" / f"{name}.jpg", quality=90)
        mask = Image.fromarray(_blob_mask(rng, h, w, cls + 1, ((cls + 3) % 20 + 1,)), mode="P")
        mask.putpalette([(i * 37) % 256 for i in range(768)])
        mask.save(root / "VOC2012" / "SegmentationClassAug" / f"{name}.png")


def write_coco(root: Path, classwise: dict[int, list[str]], seed=0) -> None:
    """COCO2014/<name> JPEGs and COCO2014/annotations/<name>.png (L, pixel = class + 1) for every listed
    image; an image listed under several classes holds all of them."""
    rng = np.random.default_rng(seed)
    classes_of: dict[str, list[int]] = {}
    for c, names in classwise.items():
        for n in names:
            classes_of.setdefault(n, []).append(c)
    for k, (name, cs) in enumerate(sorted(classes_of.items())):
        h, w = 31 + k, 45 - k
        img = root / "COCO2014" / name
        ann = root / "COCO2014" / "annotations" / (name[: name.index(".jpg")] + ".png")
        img.parent.mkdir(parents=True, exist_ok=True)
        ann.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(_rgb(rng, h, w)).save(img, quality=90)
        m = _blob_mask(rng, h, w, cs[0] + 1, tuple(c + 1 for c in cs[1:]), boundary=False)
        Image.fromarray(m, mode="L").save(ann)


def write_fss(root: Path, classes, n=10, seed=0) -> None:
    """FSS-1000/<class>/<i>.jpg and <i>.png (an RGB mask with grey levels about 128), i = 1..n."""
    rng = np.random.default_rng(seed)
    for cls in classes:
        d = root / "FSS-1000" / cls
        d.mkdir(parents=True, exist_ok=True)
        for i in range(1, n + 1):
            h, w = 30 + i, 26
            Image.fromarray(_rgb(rng, h, w)).save(d / f"{i}.jpg", quality=90)
            grey = rng.choice(np.array([0, 127, 128, 129, 255], dtype=np.uint8), (h, w))
            Image.fromarray(np.stack([grey, grey, (grey // 2)], -1)).save(d / f"{i}.png")


def write_pickle(path: Path, obj, protocol: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)
