import pytest

from lseg_pacl.bench.pacl_loss import direct_peak_estimate, pacl_loss_suite


@pytest.mark.slow
def test_both_forms_are_measured_side_by_side_with_their_ratios():
    figures = pacl_loss_suite(False, sizes=(64,))
    for form in ("efficient", "direct"):
        assert figures[f"pacl_loss.{form}_peak_mib_64"]["value"] > 0
        assert figures[f"pacl_loss.{form}_seconds_64"]["value"] > 0
    ratio = figures["pacl_loss.memory_ratio_64"]["value"]
    assert ratio == pytest.approx(figures["pacl_loss.efficient_peak_mib_64"]["value"]
                                  / figures["pacl_loss.direct_peak_mib_64"]["value"])


def test_the_direct_form_is_not_attempted_where_it_cannot_fit():
    assert direct_peak_estimate(4096) > 20 * 2**30 > direct_peak_estimate(1024)
