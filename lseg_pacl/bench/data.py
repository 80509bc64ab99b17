"""Suite ``data``: images/s of the data pipelines (decode + augment, as training runs them) at the PACL recipe
(caption shards, random resized crop to 224) and the LSeg recipe (ADE20K layout, long side in [0.5, 2] x 520,
480 crop), with 1 and 2 DataLoader workers. The inputs are generated at real sizes (COCO-like 640x480 JPEGs,
ADE-like 683x512 image/mask pairs) in a temporary folder, so the bench needs no download.
"""

from __future__ import annotations

import io
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import DataLoader

from data_modules.segmentation import SegmentationSet, collate_segmentation
from data_modules.shards import ShardSource, ShardStream
from data_modules.transforms import caption_train_transform, segmentation_train_transform
from data_modules.workers import worker_options

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def photo(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Smooth colour fields plus noise: compresses like a photograph, unlike flat colour."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    chans = [
        128 + 60 * np.sin(x * rng.uniform(0.005, 0.05) + y * rng.uniform(0.005, 0.05) + rng.uniform(0, 6))
        for _ in range(3)
    ]
    img = np.stack(chans, -1) + rng.normal(0, 12, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def jpeg_bytes(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def write_caption_shards(
    folder: Path, n: int, shards: int, rng: np.random.Generator, size: tuple[int, int] = (480, 640)
) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    urls = []
    for s in range(shards):
        path = folder / f"{s:05d}.tar"
        with tarfile.open(path, "w") as tar:
            for i in range(s * n // shards, (s + 1) * n // shards):
                for ext, data in (
                    ("jpg", jpeg_bytes(photo(rng, *size))),
                    ("txt", f"a dog and a cat on a sofa near a window {i}".encode()),
                ):
                    info = tarfile.TarInfo(f"{i:09d}.{ext}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        urls.append(str(path))
    return urls


def write_ade_layout(root: Path, n: int, rng: np.random.Generator) -> Path:
    folder = root / "ADEChallengeData2016"
    (folder / "images" / "training").mkdir(parents=True)
    (folder / "annotations" / "training").mkdir(parents=True)
    for i in range(n):
        stem = f"ADE_train_{i:08d}"
        (folder / "images" / "training" / f"{stem}.jpg").write_bytes(jpeg_bytes(photo(rng, 512, 683)))
        mask = (np.arange(683)[None, :] // 40 + np.arange(512)[:, None] // 60) % 151
        Image.fromarray(mask.astype(np.uint8)).save(folder / "annotations" / "training" / f"{stem}.png")
    return folder


def images_per_second(batches: Iterable[dict]) -> float:
    """Throughput after the first batch (worker start-up excluded)."""
    it = iter(batches)
    next(it)
    count, start = 0, time.perf_counter()
    for batch in it:
        count += int(batch["image"].shape[0])
    return count / (time.perf_counter() - start)


def shard_loader(urls: list[str], transform, n: int, workers: int) -> DataLoader:
    stream = ShardStream(
        [ShardSource(tuple(urls))],
        transform,
        batch_size=16,
        samples_per_epoch=n,
        num_workers=workers,
        resampled=False,
        shuffle_buffer=64,
    )
    return DataLoader(stream, batch_size=None, num_workers=workers, **worker_options(workers))


def data_suite(full: bool, device: str = "cpu") -> dict[str, dict]:
    n = 768 if full else 192
    figures: dict[str, dict] = {}
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        urls = write_caption_shards(Path(tmp) / "shards", n, shards=4, rng=rng)
        web = write_caption_shards(Path(tmp) / "web", n // 2, shards=2, rng=rng, size=(960, 1280))
        write_ade_layout(Path(tmp), n, rng)
        pacl = caption_train_transform(224, CLIP_MEAN, CLIP_STD, scale_min=0.5)
        lseg = segmentation_train_transform(480, 520, (0.5,) * 3, (0.5,) * 3)
        runs: dict[str, Callable[[int], Iterable[dict]]] = {
            "pacl_224_shards": lambda w: shard_loader(urls, pacl, n, w),
            "lseg_480_ade20k": lambda w: DataLoader(
                SegmentationSet("ade20k", tmp, "training", lseg),
                batch_size=8,
                num_workers=w,
                collate_fn=collate_segmentation,
                **worker_options(w),
            ),
        }
        for name, loader in runs.items():
            rates = {w: images_per_second(loader(w)) for w in (1, 2)}
            figures[f"data.{name}.images_per_s_per_worker"] = {"value": rates[1], "unit": "images/s"}
            figures[f"data.{name}.images_per_s_2_workers"] = {"value": rates[2], "unit": "images/s"}
            figures[f"data.{name}.scaling_2_vs_1_workers"] = {"value": rates[2] / rates[1], "unit": "ratio"}
        # Reduced-size JPEG decoding (images.py), on and off side by side, 1 worker: web-sized 1280x960 images
        # at the PACL recipe, and COCO-sized 640x480 ones without cropping (the cacheable recipe).
        for name, files, scale_min in (("web_1280_crop", web, 0.5), ("coco_640_nocrop", urls, 1.0)):
            rates = {}
            for reduced in (False, True):
                t = caption_train_transform(
                    224, CLIP_MEAN, CLIP_STD, scale_min=scale_min, hflip=False, reduced_decode=reduced
                )
                rates[reduced] = images_per_second(shard_loader(files, t, n // 2, 1))
            figures[f"data.pacl_224_{name}.images_per_s_full_decode"] = {
                "value": rates[False],
                "unit": "images/s",
            }
            figures[f"data.pacl_224_{name}.images_per_s_reduced_decode"] = {
                "value": rates[True],
                "unit": "images/s",
            }
            figures[f"data.pacl_224_{name}.reduced_decode_speedup"] = {
                "value": rates[True] / rates[False],
                "unit": "x",
            }
    return figures
