import pytest

from lseg_pacl.bench.gpu import gpu_suite, vit_macs


@pytest.mark.parametrize("width,layers,gmacs", [(768, 12, 17.58), (1024, 24, 61.6)])
def test_vit_macs_match_the_published_counts(width, layers, gmacs):
    assert vit_macs(width, layers, 16, 224) / 1e9 == pytest.approx(
        gmacs, rel=0.005
    )  # timm's ViT-B/16, ViT-L/16


def test_without_cuda_the_gpu_suite_says_so_and_measures_nothing():
    assert gpu_suite(False, "cpu") == {
        "gpu.available": {"value": 0, "unit": "no CUDA device: nothing measured"}
    }
