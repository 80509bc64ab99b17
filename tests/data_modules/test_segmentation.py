import numpy as np
import pytest
import torch
from PIL import Image

from data_modules.images import read_label_png
from data_modules.segmentation import IGNORE_INDEX, AdeLayoutSegmentation, ade_label_map, class_names_for
from data_modules.synthetic import CLASS_NAMES
from data_modules.transforms import segmentation_eval_transform


def test_ade_mapping_sends_zero_to_ignore_and_shifts_the_rest(tmp_path):
    raw = np.array([[0, 1, 150], [2, 0, 3]])
    out = ade_label_map(raw, 150, tmp_path)
    assert out.tolist() == [[IGNORE_INDEX, 0, 149], [1, IGNORE_INDEX, 2]]
    with pytest.raises(ValueError, match="outside"):
        ade_label_map(np.array([[151]]), 150, tmp_path / "m.png")


def test_palette_png_gives_indices_not_luminance(tmp_path):
    idx = np.array([[0, 1], [2, 3]], dtype=np.uint8)
    img = Image.fromarray(idx, mode="P")
    img.putpalette([0, 0, 0, 255, 255, 255, 10, 200, 30, 250, 0, 0] + [0] * (256 * 3 - 12))
    img.save(tmp_path / "p.png")
    assert read_label_png(tmp_path / "p.png").tolist() == idx.tolist()


def test_synthetic_world_reads_as_ade_layout(world):
    names = class_names_for("synthetic", world / "ADEChallengeData2016")
    assert names == CLASS_NAMES
    ds = AdeLayoutSegmentation(world / "ADEChallengeData2016", "validation", names,
                               segmentation_eval_transform(64, (0.5,) * 3, (0.5,) * 3))
    assert len(ds) == 8
    item = ds[0]
    assert item["image"].shape == (3, 64, 64) and item["mask"].shape == (64, 64)
    assert item["mask"].dtype == torch.long
    values = set(item["mask"].unique().tolist())
    assert values <= set(range(len(names))) | {IGNORE_INDEX}
    raw = read_label_png(ds.pairs[0][1])
    np.testing.assert_array_equal(item["mask"].numpy(), ade_label_map(raw, len(names), ds.pairs[0][1]))


def test_missing_layout_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="ADEChallengeData2016"):
        AdeLayoutSegmentation(tmp_path, "validation", CLASS_NAMES, segmentation_eval_transform(64, (0,) * 3, (1,) * 3))
