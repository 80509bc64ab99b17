"""PACL (Mukhoti et al., CVPR 2023): a residual patch embedder and the patch-aligned compatibility function.

For an image with patch embeddings p_1..p_T and a text embedding t:
    s_i = cos(p_i, t),  a = softmax(s / temperature) over patches,  v = sum_i a_i p_i,  phi = cos(v, t).
``pacl_compatibility`` scores every image against every text without building v for each pair: the numerator
v . t_hat = sum_i a_i s_i |p_i| needs only s, and |v|^2 = a^T G a with the per-image Gram matrix G = P P^T.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint


class PatchEmbedder(nn.Module):
    """e_v: a residual block, skip = Linear(width -> dim), main = Linear -> ReLU -> Linear.

    With ``skip_init`` (CLIP's projection, [width, dim]) the skip branch starts as CLIP's own projection and
    the main branch's output layer starts at zero, so training starts from CLIP's dense features.
    """

    def __init__(
        self, width: int, dim: int, hidden: int = 512, skip_init: torch.Tensor | None = None
    ) -> None:
        super().__init__()
        self.skip = nn.Linear(width, dim)
        self.main = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, dim))
        if skip_init is not None:
            with torch.no_grad():
                self.skip.weight.copy_(skip_init.detach().t())
                self.skip.bias.zero_()
                self.main[-1].weight.zero_()
                self.main[-1].bias.zero_()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.skip(tokens) + self.main(tokens)


def pacl_compatibility(
    patches: torch.Tensor,
    texts: torch.Tensor,
    temperature: float | torch.Tensor = 0.1,
    eps: float = 1e-6,
    chunk_elements: int = 1 << 24,
) -> torch.Tensor:
    """phi(x_i, y_j) for every image i and text j, as cosines in [-1, 1].

    patches: [Bi, T, D] patch embeddings (not necessarily normalised); texts: [Bt, D]; returns [Bi, Bt].
    Never materialises the [Bi, Bt, D] tensor of attended image vectors. The texts are taken in chunks of at
    most ``chunk_elements`` / (Bi * T) at a time; when gradients are needed each chunk's [Bi, T, chunk]
    intermediates are recomputed in the backward pass instead of being kept, so the memory beyond the inputs
    is that of one chunk (this is what lets Bi = Bt = 4096 train at all).
    """
    if patches.dim() != 3 or texts.dim() != 2 or patches.shape[-1] != texts.shape[-1]:
        raise ValueError(
            f"expected patches [Bi, T, D] and texts [Bt, D], got {tuple(patches.shape)} and "
            f"{tuple(texts.shape)}"
        )
    bi, t, _ = patches.shape
    norms = patches.norm(dim=-1).clamp_min(eps)  # [Bi, T]
    unit = patches / norms.unsqueeze(-1)
    gram = patches @ patches.transpose(1, 2)  # [Bi, T, T]: |v|^2 = a^T G a
    t_hat = F.normalize(texts, dim=-1)
    step = max(1, chunk_elements // max(1, bi * t))
    chunks = t_hat.split(step)
    recompute = torch.is_grad_enabled() and (patches.requires_grad or texts.requires_grad) and len(chunks) > 1
    parts = [
        checkpoint(_compatibility_chunk, unit, norms, gram, c, temperature, eps, use_reentrant=False)
        if recompute
        else _compatibility_chunk(unit, norms, gram, c, temperature, eps)
        for c in chunks
    ]
    return torch.cat(parts, dim=1) if parts else patches.new_zeros(bi, 0)


def _compatibility_chunk(
    unit: torch.Tensor,
    norms: torch.Tensor,
    gram: torch.Tensor,
    t_hat: torch.Tensor,
    temperature: float | torch.Tensor,
    eps: float,
) -> torch.Tensor:
    """phi for every image against a chunk of unit texts [c, D]; intermediates laid out [Bi, T, c]."""
    bi, t, d = unit.shape
    sims = (unit.reshape(bi * t, d) @ t_hat.t()).reshape(bi, t, t_hat.shape[0])  # patch-text cosines
    attn = torch.softmax(sims / temperature, dim=1)  # over patches
    numerator = (attn * sims * norms.unsqueeze(-1)).sum(1)  # v . t_hat
    sq_norm = (torch.bmm(gram, attn) * attn).sum(1)  # a^T G a = |v|^2
    return numerator / sq_norm.clamp_min(eps * eps).sqrt()


def pacl_compatibility_direct(
    patches: torch.Tensor, texts: torch.Tensor, temperature: float | torch.Tensor = 0.1
) -> torch.Tensor:
    """The formula written out, materialising the attended vector v for every (image, text) pair ([Bi, Bt,
    D]): the reference ``pacl_compatibility`` is tested and benchmarked against."""
    sims = torch.einsum("itd,jd->ijt", F.normalize(patches, dim=-1), F.normalize(texts, dim=-1))
    attn = torch.softmax(sims / temperature, dim=-1)
    v_hat = F.normalize(torch.einsum("ijt,itd->ijd", attn, patches), dim=-1)
    return torch.einsum("ijd,jd->ij", v_hat, F.normalize(texts, dim=-1))


def patch_attention(
    patches: torch.Tensor, texts: torch.Tensor, temperature: float | torch.Tensor = 0.1
) -> torch.Tensor:
    """The softmax weights over patches for each image-text pair, [Bi, Bt, T] (for inspection and tests)."""
    sims = torch.einsum("itd,jd->ijt", F.normalize(patches, dim=-1), F.normalize(texts, dim=-1))
    return torch.softmax(sims / temperature, dim=-1)
