import pytest
import torch

from lseg_pacl.models.pacl import PatchEmbedder, pacl_compatibility, patch_attention
from lseg_pacl.models.pacl import pacl_compatibility_direct as direct_compatibility


@pytest.mark.parametrize("bi,bt,t,d,temp", [(3, 5, 7, 4, 0.1), (6, 2, 16, 32, 1.0), (1, 1, 3, 8, 0.05)])
def test_compatibility_equals_the_materialised_formula(bi, bt, t, d, temp):
    g = torch.Generator().manual_seed(bi * 100 + bt)
    patches = torch.randn(bi, t, d, generator=g, dtype=torch.float64)
    texts = torch.randn(bt, d, generator=g, dtype=torch.float64)
    fast = pacl_compatibility(patches, texts, temp)
    slow = direct_compatibility(patches, texts, temp)
    assert fast.shape == (bi, bt)
    torch.testing.assert_close(fast, slow, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("chunk_elements", [1 << 24, 4 * 9 * 2, 1])  # one chunk; chunks of 2 texts; of 1
def test_compatibility_gradients_equal_the_materialised_formula(chunk_elements):
    g = torch.Generator().manual_seed(0)
    p1 = torch.randn(4, 9, 6, generator=g, dtype=torch.float64, requires_grad=True)
    t1 = torch.randn(5, 6, generator=g, dtype=torch.float64, requires_grad=True)
    p2, t2 = p1.detach().clone().requires_grad_(), t1.detach().clone().requires_grad_()
    w = torch.randn(4, 5, generator=g, dtype=torch.float64)
    phi = pacl_compatibility(p1, t1, 0.2, chunk_elements=chunk_elements)
    torch.testing.assert_close(phi, direct_compatibility(p2, t2, 0.2), rtol=1e-9, atol=1e-9)
    (phi * w).sum().backward()
    (direct_compatibility(p2, t2, 0.2) * w).sum().backward()
    torch.testing.assert_close(p1.grad, p2.grad)
    torch.testing.assert_close(t1.grad, t2.grad)


def test_sharp_temperature_picks_the_best_matching_patch():
    patches = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    texts = torch.tensor([[0.0, 2.0]])
    phi = pacl_compatibility(patches, texts, temperature=1e-3)
    assert phi.item() == pytest.approx(1.0, abs=1e-4)
    attn = patch_attention(patches, texts, temperature=1e-3)
    assert attn[0, 0, 1].item() == pytest.approx(1.0, abs=1e-4)


def test_compatibility_rejects_bad_shapes():
    with pytest.raises(ValueError, match="expected patches"):
        pacl_compatibility(torch.randn(2, 3), torch.randn(2, 3))
    with pytest.raises(ValueError):
        pacl_compatibility(torch.randn(2, 3, 4), torch.randn(2, 5))


def test_embedder_initialised_from_the_projection_reproduces_it():
    proj = torch.randn(12, 5)
    emb = PatchEmbedder(12, 5, hidden=7, skip_init=proj)
    tokens = torch.randn(2, 3, 12)
    torch.testing.assert_close(emb(tokens), tokens @ proj)
    free = PatchEmbedder(12, 5, hidden=7)
    assert not torch.allclose(free(tokens), tokens @ proj)
