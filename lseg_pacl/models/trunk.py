"""CLIP's image trunk as the training-free methods read it: blocks 1..L-1 run once per window, with the
intermediate results a method asks for kept (``Needs``): block outputs (the residual stream after block l) and
attention probabilities softmax(q k^T / sqrt(d)) of block l, both 1-based as the papers count layers.

Every training-free row of one CLIP shares one ``Trunk`` per window (evaluation/evaluator.py); the tokens are
those ``Transformer.forward`` computes, step for step, whatever the blocks' layout (batch first or not).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class Needs:
    outputs: frozenset[int] = frozenset()  # blocks whose output tokens a method reads
    attentions: frozenset[int] = frozenset()  # blocks whose attention probabilities a method reads

    def __or__(self, other: Needs) -> Needs:
        return Needs(self.outputs | other.outputs, self.attentions | other.attentions)


@dataclass
class Trunk:
    """One window after blocks 1..L-1: ``x`` is the last block's input, batch first [B, 1 + T, width]."""

    x: torch.Tensor
    grid: tuple[int, int]
    layers: int  # L, the number of blocks
    outputs: dict[int, torch.Tensor] = field(default_factory=dict)  # block -> [B, 1 + T, width]
    attentions: dict[int, torch.Tensor] = field(default_factory=dict)  # block -> [B, heads, N, N]


def attention_probabilities(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) [B, heads, N, N] of an open_clip block on batch-first x (its ln_1 applied),
    in at least float32."""
    attn = block.attn
    b, n, width = x.shape
    heads = attn.num_heads
    qkv = F.linear(block.ln_1(x), attn.in_proj_weight, attn.in_proj_bias)
    q, k, _ = qkv.reshape(b, n, 3, heads, width // heads).permute(2, 0, 3, 1, 4)
    logits = (q @ k.transpose(-2, -1)) * (width // heads) ** -0.5
    return logits.softmax(-1, dtype=torch.promote_types(logits.dtype, torch.float32))


NOTHING = Needs()  # the last block's input only


def run_trunk(
    transformer: nn.Module, x: torch.Tensor, grid: tuple[int, int], needs: Needs = NOTHING
) -> Trunk:
    """Blocks 1..L-1 of an open_clip ``Transformer`` on the embedded tokens ``x`` (after ln_pre, batch first),
    keeping what ``needs`` asks for."""
    blocks = list(transformer.resblocks)
    layers = len(blocks)
    wanted = needs.outputs | needs.attentions
    if wanted and (min(wanted) < 1 or max(wanted) > layers - 1):
        raise ValueError(
            f"a training-free method asked for blocks {sorted(wanted)}; the trunk has 1..{layers - 1}"
        )
    batch_first = getattr(transformer, "batch_first", True)
    trunk = Trunk(x, tuple(grid), layers)
    h = x if batch_first else x.transpose(0, 1).contiguous()  # NLD -> LND, as Transformer.forward does
    for index, block in enumerate(blocks[:-1], start=1):
        if index in needs.attentions:
            trunk.attentions[index] = attention_probabilities(block, h if batch_first else h.transpose(0, 1))
        h = block(h, attn_mask=None)
        if index in needs.outputs:
            trunk.outputs[index] = h if batch_first else h.transpose(0, 1)
    trunk.x = h if batch_first else h.transpose(0, 1)
    return trunk
