"""Position embeddings on other grids: the lineage rule equals the official code's resampling (SCLIP
clip/model.py:263-281, transcribed in tests/support/official.py)."""

import pytest
import torch
from support.official import interpolate_pos_encoding

from lseg_pacl.models.clip import ClipBackbone
from lseg_pacl.models.positions import POSITION_RULES, lineage, resized


@pytest.mark.parametrize("grid", [(21, 31), (28, 28), (14, 14), (7, 28), (13, 15), (35, 70)])
def test_lineage_equals_the_official_resampling(grid):
    g = torch.Generator().manual_seed(0)
    pos = torch.randn(1 + 14 * 14, 24, generator=g, dtype=torch.float64) * 0.7 + 0.2
    expected = interpolate_pos_encoding(pos, 1 + grid[0] * grid[1], grid[0] * 16, grid[1] * 16, 16)
    assert torch.equal(lineage(pos, grid), expected)


def test_the_rules_differ_off_the_trained_grid_and_agree_on_it():
    pos = torch.randn(1 + 8 * 8, 12, dtype=torch.float64)
    assert torch.equal(resized(pos, (8, 8)), pos) and torch.equal(lineage(pos, (8, 8)), pos)
    assert not torch.allclose(resized(pos, (12, 17)), lineage(pos, (12, 17)))
    # the official count-only check: a 4 x 16 grid holds 64 tokens too, so the 8 x 8 embeddings stay as
    # they are
    assert torch.equal(lineage(pos, (4, 16)), pos) and not torch.equal(resized(pos, (4, 16)), pos)


def test_the_backbone_uses_its_rule():
    torch.manual_seed(0)
    a = ClipBackbone("lseg-tiny-vit", None, pos_embed="lineage").double().eval()
    b = ClipBackbone("lseg-tiny-vit", None, pos_embed="resize").double().eval()
    b.load_state_dict(a.state_dict())
    images = torch.randn(1, 3, 96, 136, dtype=torch.float64)
    assert not torch.allclose(a.dense_features(images), b.dense_features(images))
    native = torch.randn(1, 3, 64, 64, dtype=torch.float64)
    assert torch.equal(a.dense_features(native), b.dense_features(native))
    assert set(POSITION_RULES) == {"resize", "lineage"}
    with pytest.raises(Exception, match="pos_embed"):
        ClipBackbone("lseg-tiny-vit", None, pos_embed="nearest")
