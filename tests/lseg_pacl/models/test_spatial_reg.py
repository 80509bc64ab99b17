"""Spatial regularization against a direct computation of its definition."""

import pytest
import torch
import torch.nn.functional as F

from lseg_pacl.models.spatial_reg import SpatialRegularization


def direct(x, weight, bias, kind, depth, act):
    """Per label channel, the same 3x3 kernel (cross-correlation with zero padding), written out by hand."""
    for i in range(depth):
        padded = F.pad(x, (1, 1, 1, 1))
        h, w = x.shape[-2:]
        out = torch.full_like(x, float(bias))
        for dy in range(3):
            for dx in range(3):
                out = out + weight[dy, dx] * padded[..., dy:dy + h, dx:dx + w]
        if kind == "bottleneck":
            out = out + x.max(1, keepdim=True).values
        x = act(out) if i < depth - 1 else out
    return x


@pytest.mark.parametrize("kind", ["depthwise", "bottleneck"])
@pytest.mark.parametrize(("activation", "fn"), [("relu", torch.relu), ("tanh", torch.tanh),
                                                ("lrelu", lambda t: F.leaky_relu(t, 0.01))])
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_matches_the_definition(kind, activation, fn, depth):
    torch.manual_seed(0)
    reg = SpatialRegularization(kind, depth, activation)
    x = torch.randn(2, 5, 6, 7)
    expected = direct(x, reg.conv.weight[0, 0].detach(), reg.conv.bias.detach(), kind, depth, fn)
    assert torch.allclose(reg(x), expected, atol=1e-6)
    assert sum(p.numel() for p in reg.parameters()) == 10


def test_label_permutation_equivariance_and_none():
    reg = SpatialRegularization("bottleneck", 2, "relu")
    x = torch.randn(1, 6, 5, 5)
    perm = torch.randperm(6)
    assert torch.allclose(reg(x[:, perm]), reg(x)[:, perm], atol=1e-6)
    assert torch.equal(SpatialRegularization("none")(x), x)
    assert torch.equal(SpatialRegularization("none", 0)(x), x)  # block_depth 0: valid with no block
    with pytest.raises(ValueError, match="0 only with none"):
        SpatialRegularization("depthwise", 0)
    with pytest.raises(ValueError, match="known: none"):
        SpatialRegularization("gaussian")
