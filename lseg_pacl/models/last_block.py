"""Training-free CLIP segmentation baselines: each one swaps only the last block of a frozen open_clip ViT.

Plain CLIP's last block mixes every patch with global context, so its patch tokens barely localise. MaskCLIP,
SCLIP, ClearCLIP and NACLIP rewrite that single block (self-only, correlative q-q + k-k, q-q without residual,
k-k with a neighbourhood prior) and leave every earlier block untouched; the patch tokens that come out are
then scored against class texts exactly as for CLIP (ln_post, projection, cosine).
docs/methods.md#training-free-last-blocks.

The attention is computed by hand from the block's own ``nn.MultiheadAttention`` weights (in_proj, out_proj),
so the functions work for any open_clip ``ResidualAttentionBlock`` whatever its ``batch_first``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from lseg_pacl.models.trunk import run_trunk


def _check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"unknown last-block variant {variant!r}; known: {', '.join(VARIANTS)}")


def _check_tokens(x: torch.Tensor, grid: tuple[int, int]) -> None:
    if x.ndim != 3 or x.shape[1] != 1 + grid[0] * grid[1]:
        raise ValueError(
            f"expected batch-first tokens [B, 1 + {grid[0]}*{grid[1]}, width] (CLS first) for grid "
            f"{tuple(grid)}, got shape {tuple(x.shape)}"
        )


def _mha(block: nn.Module) -> nn.MultiheadAttention:
    attn = getattr(block, "attn", None)
    if not isinstance(attn, nn.MultiheadAttention) or attn.in_proj_weight is None:
        raise TypeError(
            "the training-free variants need an open_clip ResidualAttentionBlock whose attn is an "
            f"nn.MultiheadAttention with a packed in_proj_weight; got {type(attn).__name__}"
        )
    return attn


def _qkv(block: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, k, v of the block's attention on ln_1(x), each [B, heads, N, head_dim]."""
    attn = _mha(block)
    b, n, width = x.shape
    heads = attn.num_heads
    qkv = F.linear(block.ln_1(x), attn.in_proj_weight, attn.in_proj_bias)
    qkv = qkv.reshape(b, n, 3, heads, width // heads).permute(2, 0, 3, 1, 4)
    return qkv[0], qkv[1], qkv[2]


def _merge_heads(y: torch.Tensor) -> torch.Tensor:
    b, h, n, d = y.shape
    return y.transpose(1, 2).reshape(b, n, h * d)


def _softmax(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over keys in at least float32 (bf16 logits of large CLIPs lose the small weights otherwise)."""
    return logits.softmax(dim=-1, dtype=torch.promote_types(logits.dtype, torch.float32))


def neighbourhood_prior(
    grid: tuple[int, int],
    sigma: float = 5.0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """NACLIP's Gaussian prior [1 + T, 1 + T]: exp(-|pos_i - pos_j|^2 / (2 sigma^2)) between patches; CLS
    rows/cols 0.

    Patches are in open_clip's row-major order (index = row * grid[1] + col); sigma is in patches.
    """
    rows, cols = torch.meshgrid(
        torch.arange(grid[0], device=device, dtype=dtype),
        torch.arange(grid[1], device=device, dtype=dtype),
        indexing="ij",
    )
    pos = torch.stack([rows.flatten(), cols.flatten()], dim=1)
    dist2 = (pos[:, None, :] - pos[None, :, :]).square().sum(-1)
    prior = torch.exp(-dist2 / (2.0 * sigma**2))
    return F.pad(prior, (1, 0, 1, 0))  # CLS (index 0) has no position


@functools.lru_cache(maxsize=16)
def _cached_prior(
    grid: tuple[int, int], sigma: float, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """The prior of a window size, built once (every window of a protocol has the same grid); read-only."""
    return neighbourhood_prior(grid, sigma, device, dtype)


def _weights(
    q: torch.Tensor, k: torch.Tensor, variant: str, grid: tuple[int, int], sigma: float
) -> torch.Tensor:
    scale = q.shape[-1] ** -0.5
    if variant == "sclip":
        return _softmax(q @ q.transpose(-2, -1) * scale) + _softmax(k @ k.transpose(-2, -1) * scale)
    if variant == "clearclip":
        return _softmax(q @ q.transpose(-2, -1) * scale)
    logits = k @ k.transpose(-2, -1) * scale
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    return _softmax(logits + _cached_prior(tuple(grid), float(sigma), k.device, logits.dtype))


def attention_weights(
    block: nn.Module, x: torch.Tensor, variant: str, grid: tuple[int, int], naclip_sigma: float = 5.0
) -> torch.Tensor:
    """The last-block attention [B, heads, N, N] (at least float32) of sclip, clearclip or naclip on
    batch-first x.

    Rows sum to 1 (clearclip, naclip) or 2 (sclip, two softmaxes added as in the paper).
    """
    _check_variant(variant)
    if variant not in ("sclip", "clearclip", "naclip"):
        raise ValueError(f"{variant!r} has no attention matrix of its own; sclip, clearclip and naclip do")
    _check_tokens(x, grid)
    q, k, _ = _qkv(block, x)
    return _weights(q, k, variant, grid, naclip_sigma)


def _plain(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """CLIP: the block unchanged (called in its own token layout)."""
    attn = getattr(block, "attn", None)
    if getattr(attn, "batch_first", True):
        return block(x)
    return block(x.transpose(0, 1)).transpose(0, 1)


def _maskclip(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """MaskCLIP: every token attends only to itself, so attention = out_proj(v); residual and FFN kept."""
    _, _, v = _qkv(block, x)
    y = _mha(block).out_proj(_merge_heads(v))
    x = x + block.ls_1(y)
    return x + block.ls_2(block.mlp(block.ln_2(x)))


def _attend(
    block: nn.Module, x: torch.Tensor, variant: str, grid: tuple[int, int], sigma: float
) -> torch.Tensor:
    """out_proj(attn @ v) with heads merged, attn the variant's attention on ln_1(x)."""
    q, k, v = _qkv(block, x)
    attn = _weights(q, k, variant, grid, sigma)
    return _mha(block).out_proj(_merge_heads(attn.to(v.dtype) @ v))


def _sclip(block: nn.Module, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """SCLIP: correlative attention softmax(q qT s) + softmax(k kT s); residual and FFN kept."""
    y = _attend(block, x, "sclip", grid, 0.0)
    x = x + block.ls_1(y)
    return x + block.ls_2(block.mlp(block.ln_2(x)))


def _clearclip(block: nn.Module, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """ClearCLIP: q-q attention; the block output is out_proj(attn @ v) alone (no residual, no FFN)."""
    return _attend(block, x, "clearclip", grid, 0.0).to(x.dtype)


def _naclip(block: nn.Module, x: torch.Tensor, grid: tuple[int, int], sigma: float) -> torch.Tensor:
    """NACLIP: k-k attention plus a Gaussian neighbourhood prior; out_proj(attn @ v) alone (no residual, no
    FFN)."""
    return _attend(block, x, "naclip", grid, sigma).to(x.dtype)


# The registry: each variant's last block as f(block, tokens, grid, naclip_sigma).
VARIANTS: dict[str, Callable[[nn.Module, torch.Tensor, tuple[int, int], float], torch.Tensor]] = {
    "plain": lambda block, x, grid, sigma: _plain(block, x),
    "maskclip": lambda block, x, grid, sigma: _maskclip(block, x),
    "sclip": lambda block, x, grid, sigma: _sclip(block, x, grid),
    "clearclip": lambda block, x, grid, sigma: _clearclip(block, x, grid),
    "naclip": _naclip,
}


def last_block(
    block: nn.Module, x: torch.Tensor, variant: str, grid: tuple[int, int], naclip_sigma: float = 5.0
) -> torch.Tensor:
    """Run the last ViT block as ``variant`` on batch-first tokens [B, 1 + T, width] (CLS first, T =
    grid[0]*grid[1]).

    Returns [B, 1 + T, width] before ln_post. Variants that keep the residual keep the block's ln_1 input
    normalisation and its layer scales ls_1/ls_2; clearclip and naclip return out_proj(attn @ v) alone.
    """
    _check_variant(variant)
    _check_tokens(x, grid)
    return VARIANTS[variant](block, x, grid, naclip_sigma)


def final_block(transformer: nn.Module, x: torch.Tensor, variant: str, grid: tuple[int, int]) -> torch.Tensor:
    """The transformer's last block as ``variant`` on its batch-first input x [B, 1 + T, width]; "plain" runs
    the block itself in its own layout."""
    _check_variant(variant)
    block = list(transformer.resblocks)[-1]
    if variant == "plain":
        return _plain(block, x)
    return last_block(block, x, variant, grid)


def transformer_tokens(
    transformer: nn.Module, x: torch.Tensor, variant: str, grid: tuple[int, int]
) -> torch.Tensor:
    """Every block of an open_clip Transformer on batch-first x [B, N, width], the last one as ``variant``.

    Follows ``Transformer.forward`` step for step (layout included), so "plain" equals ``transformer(x)``.
    Returns batch-first tokens.
    """
    _check_variant(variant)
    _check_tokens(x, grid)
    return final_block(transformer, run_trunk(transformer, x, grid).x, variant, grid)
