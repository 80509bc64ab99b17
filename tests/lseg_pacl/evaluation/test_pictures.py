"""Qualitative panels: colours, layout (three columns, legend of present classes), upscaling, PNG, W&B
masks."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lseg_pacl.evaluation.pictures import (
    MAX_LEGEND,
    MIN_HEIGHT,
    colourise,
    legend_ids,
    palette,
    panel,
    save_panel,
    wandb_masks,
)

NAMES = [f"class {i}" for i in range(8)]
GREY = (1, 2, 3)  # an image colour no class and no text uses


def test_palette_distinct_deterministic_and_never_black():
    for n in (1, 21, 171, 600, 5000):  # 5000 exercises the collision guard
        colours = palette(n)
        assert colours.shape == (n, 3) and colours.dtype == np.uint8
        assert len({tuple(c) for c in colours}) == n
        assert not (colours == 0).all(axis=1).any()
        assert not (colours == 255).all(axis=1).any()
    np.testing.assert_array_equal(palette(50), palette(50))
    np.testing.assert_array_equal(
        palette(50)[:10], palette(10)
    )  # a class keeps its colour across vocabularies
    assert palette(0).shape == (0, 3)


def test_colourise_maps_ids_and_ignore_to_black():
    colours = palette(3)
    mask = np.array([[0, 1], [2, 255]])
    out = colourise(mask, colours)
    assert out.shape == (2, 2, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[0, 0], colours[0])
    np.testing.assert_array_equal(out[0, 1], colours[1])
    np.testing.assert_array_equal(out[1, 0], colours[2])
    np.testing.assert_array_equal(out[1, 1], [0, 0, 0])
    with pytest.raises(ValueError, match="outside the palette"):
        colourise(np.array([[3]]), colours)


def _find_block(picture: np.ndarray, colour, rows: slice | None = None) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the first rectangle of ``colour`` in reading order (within ``rows``)."""
    hit = (picture == np.asarray(colour, dtype=np.uint8)).all(axis=-1)
    if rows is not None:
        hit = hit[rows]
    assert hit.any()
    top, left = np.unravel_index(np.argmax(hit), hit.shape)  # first hit in reading order: the block's corner
    # walk right and down from the first hit while the run stays unbroken
    width = int(np.argmin(np.append(hit[top, left:], False)))
    height = int(np.argmin(np.append(hit[top:, left], False)))
    offset = rows.start if rows is not None and rows.start else 0
    return int(top) + offset, int(left), height, width


def _uniform(h: int, w: int, target_id: int, prediction_id: int):
    image = np.empty((h, w, 3), dtype=np.uint8)
    image[:] = GREY
    return image, np.full((h, w), target_id), np.full((h, w), prediction_id)


@pytest.mark.parametrize("size", [(300, 400), (32, 48)])
def test_panel_has_image_ground_truth_and_prediction_side_by_side(size):
    h, w = size
    colours = palette(len(NAMES))
    picture = np.asarray(panel(*_uniform(h, w, 2, 5), NAMES, title="a title"))
    scale = max(1, -(-MIN_HEIGHT // h))
    image_block = _find_block(picture, GREY)
    assert image_block[2:] == (h * scale, w * scale)
    top, left, height, width = image_block
    rows = slice(top, top + height)
    gt_block = _find_block(picture, colours[2], rows)
    pred_block = _find_block(picture, colours[5], rows)
    assert gt_block[0] == pred_block[0] == top  # one row of three pictures
    assert gt_block[2:] == pred_block[2:] == (height, width)
    assert left + width <= gt_block[1] and gt_block[1] + width <= pred_block[1]  # in this order, no overlap
    assert picture.shape[0] > top + height  # the legend sits below


def test_panel_columns_hold_the_colourised_masks():
    rng = np.random.default_rng(0)
    h, w = 40, 30
    image, target, prediction = _uniform(h, w, 2, 5)
    gt_left = _find_block(np.asarray(panel(image, target, prediction, NAMES)), palette(len(NAMES))[2])[1]
    pred_left = _find_block(np.asarray(panel(image, target, prediction, NAMES)), palette(len(NAMES))[5])[1]
    top, _, height, width = _find_block(np.asarray(panel(image, target, prediction, NAMES)), GREY)
    scale = height // h

    target = rng.integers(0, len(NAMES), (h, w))
    target[:3, :3] = 255
    prediction = rng.integers(0, len(NAMES), (h, w))
    picture = np.asarray(panel(image, target, prediction, NAMES))
    expected_gt = np.repeat(np.repeat(colourise(target, palette(len(NAMES))), scale, 0), scale, 1)
    expected_pred = np.repeat(np.repeat(colourise(prediction, palette(len(NAMES))), scale, 0), scale, 1)
    np.testing.assert_array_equal(picture[top : top + height, gt_left : gt_left + width], expected_gt)
    np.testing.assert_array_equal(picture[top : top + height, pred_left : pred_left + width], expected_pred)


def test_legend_lists_only_present_classes_most_pixels_first():
    target = np.array([[1, 1, 1], [4, 255, 255]])
    prediction = np.array([[6, 6, 6], [6, 6, 255]])
    assert legend_ids(target, prediction) == [6, 1, 4]
    assert legend_ids(np.full((2, 2), 255), np.full((2, 2), 255)) == []
    assert legend_ids(np.array([[3, 2]]), np.array([[2, 3]])) == [2, 3]  # ties: smaller id first


def test_legend_shows_present_class_swatches_and_grows_with_classes():
    colours = palette(len(NAMES))
    image, target, prediction = _uniform(64, 64, 2, 5)
    picture = np.asarray(panel(image, target, prediction, NAMES))
    top, _, height, _ = _find_block(picture, GREY)
    legend = picture[top + height :]
    present = {i for i in range(len(NAMES)) if (legend == colours[i]).all(axis=-1).any()}
    assert present == {2, 5}

    names = [f"a rather long class name number {i}" for i in range(200)]
    few = panel(image, np.zeros((64, 64), int), np.zeros((64, 64), int), names)
    many_target = np.arange(64 * 64).reshape(64, 64) % 200
    many = panel(image, many_target, many_target, names)
    assert many.height > few.height  # more legend rows
    assert len(legend_ids(many_target, many_target)) == 200 > MAX_LEGEND
    capped = panel(image, many_target % (MAX_LEGEND + 40), many_target % (MAX_LEGEND + 40), names)
    assert capped.height == many.height  # only MAX_LEGEND classes are ever drawn


def test_tiny_images_are_scaled_up_and_large_ones_kept():
    tiny = panel(*_uniform(8, 8, 0, 1), NAMES)
    assert tiny.height >= MIN_HEIGHT
    block = _find_block(np.asarray(tiny), GREY)
    assert block[2] == block[3] >= MIN_HEIGHT and block[2] % 8 == 0  # integer nearest upscaling
    large = panel(*_uniform(1000, 1200, 0, 1), NAMES)
    assert _find_block(np.asarray(large), GREY)[2:] == (1000, 1200)
    assert large.width >= 3 * 1200


def test_panel_rejects_mismatched_inputs():
    image, target, prediction = _uniform(16, 16, 0, 1)
    with pytest.raises(ValueError, match="shape"):
        panel(image, target[:8], prediction, NAMES)
    with pytest.raises(ValueError, match="uint8"):
        panel(image.astype(np.float32), target, prediction, NAMES)
    with pytest.raises(ValueError, match="outside the palette"):
        panel(image, np.full((16, 16), len(NAMES)), prediction, NAMES)


def test_save_panel_writes_a_readable_png(tmp_path):
    image, target, prediction = _uniform(32, 32, 0, 1)
    path = save_panel(tmp_path / "a" / "b" / "panel.png", image, target, prediction, NAMES, title="t")
    assert path.is_file()
    with Image.open(path) as loaded:
        assert loaded.format == "PNG"
        np.testing.assert_array_equal(
            np.asarray(loaded.convert("RGB")), np.asarray(panel(image, target, prediction, NAMES, title="t"))
        )


def test_wandb_masks_structure():
    target = np.array([[0, 1], [2, 255]])
    prediction = np.array([[1, 1], [255, 0]])
    masks = wandb_masks(target, prediction, ["a", "b", "c"])
    assert set(masks) == {"ground_truth", "prediction"}
    for key, mask in (("ground_truth", target), ("prediction", prediction)):
        entry = masks[key]
        assert set(entry) == {"mask_data", "class_labels"}
        assert entry["mask_data"].dtype == np.uint8
        np.testing.assert_array_equal(entry["mask_data"], mask)
        assert entry["class_labels"] == {0: "a", 1: "b", 2: "c", 255: "ignore"}
    with pytest.raises(ValueError, match="outside"):
        wandb_masks(np.array([[3]]), np.array([[0]]), ["a", "b", "c"])
    with pytest.raises(ValueError, match="255"):
        wandb_masks(target, prediction, [str(i) for i in range(300)])


def test_wandb_accepts_the_masks():
    wandb = pytest.importorskip("wandb")
    image, target, prediction = _uniform(16, 16, 0, 1)
    target[0, 0] = 255
    logged = wandb.Image(image, masks=wandb_masks(target, prediction, NAMES))
    assert set(logged._masks) == {"ground_truth", "prediction"}


def test_sixteen_bit_benchmarks_draw_65535_black_and_class_255_in_colour():
    colours = palette(847)
    mask = np.array([[255, 65535], [846, 0]], dtype=np.uint16)
    out = colourise(mask, colours, ignore_index=65535)
    assert (out[0, 1] == 0).all() and (out[0, 0] == colours[255]).all() and (out[1, 0] == colours[846]).all()
    assert legend_ids(mask, mask, ignore_index=65535) == [0, 255, 846]
    with pytest.raises(ValueError, match="outside the palette"):
        colourise(mask, colours)  # 65535 is no class and, with the 8-bit ignore index, not ignored
