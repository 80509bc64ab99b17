"""Each bench suite, at a small size: every figure has a unit and a positive value, and each ratio is the
ratio of the figures measured beside it in the same run."""

import pytest

from lseg_pacl.bench.evaluation import eval_suite
from lseg_pacl.bench.feature_cache import feature_cache_suite
from lseg_pacl.bench.text import text_suite


def check(figures: dict) -> None:
    for key, fig in figures.items():
        assert fig["unit"] and fig["value"] > 0, key


@pytest.mark.slow
def test_feature_cache_suite_compares_cached_and_uncached_epochs(tmp_path):
    figures = feature_cache_suite(False, "cpu", train_images=256, vitb16=False)
    check(figures)
    assert figures["feature_cache.speedup"]["value"] == pytest.approx(
        figures["feature_cache.demo_epoch_s_without_cache"]["value"]
        / figures["feature_cache.demo_epoch_s_with_cache"]["value"]
    )


@pytest.mark.slow
def test_text_suite_times_truncation_and_the_label_set_cache():
    figures = text_suite(False, "cpu", model="lseg-tiny-vit")
    check(figures)
    assert figures["text.truncation_speedup"]["value"] == pytest.approx(
        figures["text.encode_s_full_context_128"]["value"] / figures["text.encode_s_truncated_128"]["value"]
    )


@pytest.mark.slow
def test_eval_suite_measures_every_protocol_shape():
    figures = eval_suite(False, "cpu", vitb16=False)
    check(figures)
    assert {k.split("_")[1] for k in figures} == {"whole", "slide", "multiscale"}


@pytest.mark.slow
def test_rows_suite_measures_each_row_and_the_shared_trunk_beside_them():
    from lseg_pacl.bench.rows import ROWS, rows_suite

    figures = rows_suite(False, "cpu", vitb16=False)
    check(figures)
    assert all(f"rows.tiny_{label}_images_per_s" in figures for label in ROWS)
    assert all(f"rows.tiny_{label}_peak_mib" in figures for label in ROWS)
    assert figures["rows.tiny_five_rows_over_one"]["value"] == pytest.approx(
        figures["rows.tiny_one_row_images_per_s"]["value"]
        / figures["rows.tiny_five_rows_shared_images_per_s"]["value"]
    )


@pytest.mark.slow
def test_lseg_zs_suite_times_a_zero_shot_training_step_per_backbone():
    from lseg_pacl.bench.lseg_zs import lseg_zs_suite

    figures = lseg_zs_suite(False, "cpu", size=32, clip="lseg-tiny-vit",
                            backbones={"tiny_rn": "resnet_tiny_lseg", "tiny_vit": "vit_tiny_lseg"})
    check(figures)
    kinds = ("step_s", "peak_mib")
    assert set(figures) == {f"lseg_zs.{b}_{k}_1ep_32" for b in ("tiny_rn", "tiny_vit") for k in kinds}
