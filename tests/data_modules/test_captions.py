import json

import pytest
import torch

from data_modules.captions import CocoCaptions, collate_captions, read_coco_captions
from data_modules.transforms import caption_train_transform

MEAN, STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


def test_reads_the_coco_layout(world):
    records = read_coco_captions(world / "coco", "train2017")
    assert len(records) == 48
    assert all(r.file.is_file() and len(r.captions) == 5 for r in records)
    assert all(len(r.nouns) == len(r.captions) for r in records)


def test_items_and_collation(world):
    ds = CocoCaptions(world / "coco", "val2017", caption_train_transform(32, MEAN, STD, 0.8))
    torch.manual_seed(0)
    items = [ds[i] for i in range(3)]
    assert items[0]["image"].shape == (3, 32, 32) and items[0]["image"].dtype == torch.float32
    rec = ds.records[0]
    assert items[0]["caption"] in rec.captions
    assert items[0]["nouns"] == list(rec.nouns[rec.captions.index(items[0]["caption"])])
    batch = collate_captions(items)
    assert batch["image"].shape == (3, 3, 32, 32) and len(batch["caption"]) == 3 and len(batch["nouns"]) == 3


def test_caption_draw_is_seeded(world):
    ds = CocoCaptions(world / "coco", "train2017", caption_train_transform(32, MEAN, STD, 0.8))
    torch.manual_seed(5)
    first = [ds[i]["caption"] for i in range(10)]
    torch.manual_seed(5)
    assert [ds[i]["caption"] for i in range(10)] == first


def test_empty_captions_are_skipped_and_missing_files_named(tmp_path):
    (tmp_path / "annotations").mkdir()
    data = {
        "images": [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "b.jpg"}],
        "annotations": [
            {"id": 1, "image_id": 1, "caption": "  "},
            {"id": 2, "image_id": 2, "caption": "a cat"},
        ],
    }
    (tmp_path / "annotations" / "captions_x.json").write_text(json.dumps(data))
    records = read_coco_captions(tmp_path, "x")
    assert [r.captions for r in records] == [("a cat",)]
    with pytest.raises(FileNotFoundError, match="captions_y.json"):
        read_coco_captions(tmp_path, "y")


def test_missing_or_broken_images_are_skipped_and_real_captions_get_extracted_nouns(tmp_path):
    from support.layouts import make_coco_captions, truncate

    from data_modules.bad_samples import EVENTS, Skipped

    coco = make_coco_captions(tmp_path, n=3)
    files = sorted((coco / "train2017").glob("*.jpg"))
    files[0].unlink()
    truncate(files[1], 0.3)
    ds = CocoCaptions(coco, "train2017", caption_train_transform(16, MEAN, STD))
    items = [ds[i] for i in range(3)]
    assert [(it.reason, it.file) for it in items[:2]] == [
        ("missing_file", str(files[0])),
        ("bad_image", str(files[1])),
    ]
    assert isinstance(items[0], Skipped) and items[2]["nouns"]  # COCO has no nouns field: they are extracted
    assert all(noun in items[2]["caption"].lower() for noun in items[2]["nouns"])
    batch = collate_captions(items)
    assert batch["image"].shape[0] == 1 and [r for r, _ in batch[EVENTS]] == ["missing_file", "bad_image"]


def test_a_non_utf8_caption_file_is_a_clear_error(tmp_path):
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "captions_x.json").write_bytes(
        b'{"images": [], "annotations": [{"caption": "\xff"}]}'
    )
    with pytest.raises(ValueError, match="not a UTF-8 COCO captions JSON"):
        read_coco_captions(tmp_path, "x")
