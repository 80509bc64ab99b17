"""Tests for the embedded synthetic world (data_modules/synthetic/)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_modules.synthetic import CLASS_NAMES, VERSION, generate, is_complete, writer

N_TRAIN, N_VAL = 12, 4
PLURALS = {"box": "boxes"}


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _mentioned(caption: str) -> set[str]:
    """Class names that occur in a caption as whole words, singular or plural."""
    words = set(re.findall(r"[a-z]+", caption.lower()))
    return {c for c in CLASS_NAMES if c in words or PLURALS.get(c, c + "s") in words}


def _coco(root: Path, split: str) -> dict:
    return json.loads((root / "coco" / "annotations" / f"captions_{split}2017.json").read_text())


def _mask(root: Path, split: str, file_name: str) -> np.ndarray:
    ade = "training" if split == "train" else "validation"
    with Image.open(
        root / "ADEChallengeData2016" / "annotations" / ade / file_name.replace(".jpg", ".png")
    ) as m:
        assert m.mode == "L"
        return np.array(m)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(tmp_path_factory.mktemp("w") / "world", seed=3, n_train=N_TRAIN, n_val=N_VAL)


def test_same_seed_is_byte_identical_and_other_seed_differs(world: Path, tmp_path: Path) -> None:
    again = generate(tmp_path / "again", seed=3, n_train=N_TRAIN, n_val=N_VAL)
    a, b = _files(world), _files(again)
    assert sorted(a) == sorted(b)
    assert len(a) == 3 + 3 * (N_TRAIN + N_VAL) + 1  # manifest, classnames, 2 caption files + images/masks
    for name in a:
        assert a[name] == b[name], name

    other = _files(generate(tmp_path / "other", seed=4, n_train=N_TRAIN, n_val=N_VAL))
    assert sorted(other) == sorted(a)
    differing = [n for n in a if n.endswith((".jpg", ".png")) and a[n] != other[n]]
    assert len(differing) >= 0.9 * 3 * (N_TRAIN + N_VAL)
    assert other["coco/annotations/captions_train2017.json"] != a["coco/annotations/captions_train2017.json"]


def test_layout_and_json_format(world: Path) -> None:
    manifest = json.loads((world / "manifest.json").read_text())
    assert manifest == {
        "format": "lseg_pacl-synthetic",
        "version": VERSION,
        "seed": 3,
        "n_train": N_TRAIN,
        "n_val": N_VAL,
        "size": 64,
        "classes": list(CLASS_NAMES),
    }
    assert json.loads((world / "classnames.json").read_text()) == list(CLASS_NAMES)
    all_image_ids: set[int] = set()
    all_ann_ids: set[int] = set()
    for split, n, coco_dir, ade in (
        ("train", N_TRAIN, "train2017", "training"),
        ("val", N_VAL, "val2017", "validation"),
    ):
        doc = _coco(world, split)
        assert set(doc) >= {"info", "images", "annotations"}
        assert len(doc["images"]) == n
        ids = [im["id"] for im in doc["images"]]
        assert len(set(ids)) == n and not (set(ids) & all_image_ids)
        all_image_ids |= set(ids)
        for im in doc["images"]:
            assert isinstance(im["id"], int)
            assert im["file_name"] == f"{im['id']:012d}.jpg"
            assert (im["width"], im["height"]) == (64, 64)
            coco_bytes = (world / "coco" / coco_dir / im["file_name"]).read_bytes()
            ade_bytes = (world / "ADEChallengeData2016" / "images" / ade / im["file_name"]).read_bytes()
            assert coco_bytes == ade_bytes
            assert (
                world / "ADEChallengeData2016" / "annotations" / ade / im["file_name"].replace(".jpg", ".png")
            ).is_file()
        per_image: dict[int, int] = {}
        for ann in doc["annotations"]:
            assert set(ann) == {"id", "image_id", "caption", "nouns"}
            assert isinstance(ann["id"], int) and ann["id"] not in all_ann_ids
            all_ann_ids.add(ann["id"])
            assert ann["image_id"] in ids
            assert isinstance(ann["caption"], str) and ann["caption"].strip()
            assert ann["nouns"] and all(nn in CLASS_NAMES for nn in ann["nouns"])
            per_image[ann["image_id"]] = per_image.get(ann["image_id"], 0) + 1
        assert per_image == {i: 5 for i in ids}
        assert len(list((world / "coco" / coco_dir).iterdir())) == n


def test_masks_match_images(world: Path) -> None:
    for split, coco_dir in (("train", "train2017"), ("val", "val2017")):
        for im in _coco(world, split)["images"]:
            with Image.open(world / "coco" / coco_dir / im["file_name"]) as img:
                assert img.format == "JPEG" and img.mode == "RGB"
                assert img.size == (im["width"], im["height"])
                rgb = np.asarray(img)
            mask = _mask(world, split, im["file_name"])
            assert mask.shape == rgb.shape[:2]
            assert mask.dtype == np.uint8 and mask.max() <= len(CLASS_NAMES)
            assert (mask == 0).mean() < 0.1
            assert len(np.unique(mask[mask > 0])) >= 2  # two stuff regions at least
            # Labels are learnable: a stuff region is not a single flat colour (texture + jitter).
            region = rgb[mask == np.bincount(mask.ravel()).argmax()]
            assert region.std(axis=0).max() > 2.0


def test_caption_nouns_are_in_mask_and_text(world: Path) -> None:
    full = total = 0
    for split in ("train", "val"):
        doc = _coco(world, split)
        names = {im["id"]: im["file_name"] for im in doc["images"]}
        by_image: dict[int, list[dict]] = {}
        for ann in doc["annotations"]:
            by_image.setdefault(ann["image_id"], []).append(ann)
        for image_id, anns in by_image.items():
            mask = _mask(world, split, names[image_id])
            in_mask = {CLASS_NAMES[v - 1] for v in np.unique(mask) if v > 0}
            for ann in anns:
                nouns = set(ann["nouns"])
                assert len(nouns) == len(ann["nouns"])
                assert nouns <= in_mask, (ann, in_mask)
                # Every noun is named in the text, and no other class name is (adjectives never are classes).
                assert _mentioned(ann["caption"]) == nouns, ann
                for noun in nouns:
                    assert (mask == CLASS_NAMES.index(noun) + 1).sum() >= 4
                total += 1
                full += len(nouns) == len(
                    {c for c in in_mask if (mask == CLASS_NAMES.index(c) + 1).sum() >= 8}
                )
            assert len({a["caption"] for a in anns}) >= 3
    assert 0.4 <= full / total <= 0.95


def test_every_class_appears(tmp_path: Path) -> None:
    assert len(CLASS_NAMES) >= 8 and len(set(CLASS_NAMES)) == len(CLASS_NAMES)
    root = generate(tmp_path / "w50", seed=0, n_train=50, n_val=0)
    seen_mask: set[str] = set()
    seen_caption: set[str] = set()
    doc = _coco(root, "train")
    for im in doc["images"]:
        mask = _mask(root, "train", im["file_name"])
        seen_mask |= {CLASS_NAMES[v - 1] for v in np.unique(mask) if v > 0}
    for ann in doc["annotations"]:
        seen_caption |= set(ann["nouns"])
    assert seen_mask == set(CLASS_NAMES)
    assert seen_caption == set(CLASS_NAMES)
    assert _coco(root, "val")["images"] == []


def test_other_size(tmp_path: Path) -> None:
    root = generate(tmp_path / "w96", seed=1, n_train=3, n_val=1, size=96)
    for im in _coco(root, "train")["images"]:
        assert (im["width"], im["height"]) == (96, 96)
        with Image.open(root / "coco" / "train2017" / im["file_name"]) as img:
            assert img.size == (96, 96)
        assert _mask(root, "train", im["file_name"]).shape == (96, 96)


def test_existing_world_is_reused(world: Path) -> None:
    before = {p: p.stat().st_mtime_ns for p in world.rglob("*")}
    assert is_complete(world, 3, N_TRAIN, N_VAL, 64)
    assert not is_complete(world, 4, N_TRAIN, N_VAL, 64)
    assert not is_complete(world, 3, N_TRAIN + 1, N_VAL, 64)
    assert not is_complete(world, 3, N_TRAIN, N_VAL, 32)
    assert generate(world, seed=3, n_train=N_TRAIN, n_val=N_VAL) == world
    after = {p: p.stat().st_mtime_ns for p in world.rglob("*")}
    assert after == before
    assert not [p for p in world.parent.iterdir() if p.name != world.name]  # no temp sibling left


def test_non_matching_directory_is_refused_and_untouched(world: Path, tmp_path: Path) -> None:
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("precious")
    with pytest.raises(FileExistsError):
        generate(user, seed=0, n_train=2, n_val=1)
    assert [p.name for p in user.iterdir()] == ["notes.txt"]
    assert (user / "notes.txt").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]

    # A world with other parameters is not a match either, and is left exactly as it was.
    before = _files(world)
    with pytest.raises(FileExistsError):
        generate(world, seed=5, n_train=N_TRAIN, n_val=N_VAL)
    assert _files(world) == before

    # A plain file in the way is refused too.
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(FileExistsError):
        generate(blocker, seed=0, n_train=2, n_val=1)
    assert blocker.read_text() == "x"


def test_empty_directory_is_filled(tmp_path: Path) -> None:
    out = tmp_path / "empty"
    out.mkdir()
    assert generate(out, seed=0, n_train=2, n_val=1) == out
    assert is_complete(out, 0, 2, 1, 64)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


def test_interrupted_generation_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = writer._write_split

    def failing(root: Path, split: str, *args, **kwargs) -> None:
        real(root, split, *args, **kwargs)
        if split == "val":
            raise KeyboardInterrupt("simulated interruption")

    monkeypatch.setattr(writer, "_write_split", failing)
    with pytest.raises(KeyboardInterrupt):
        generate(tmp_path / "w", seed=0, n_train=3, n_val=2)
    assert list(tmp_path.iterdir()) == []
