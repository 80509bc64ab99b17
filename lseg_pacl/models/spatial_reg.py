"""LSeg's spatial regularization of the low-resolution label logits (docs/methods.md#lseg).

One 3x3 convolution with a single input and output channel is shared by every label channel, so the block is
equivariant to the order of the labels and works for any number of them (10 parameters). ``bottleneck`` adds
the channel-wise max over labels (of the block's input) to the convolution's output. The block is applied
``depth`` times with shared weights; the last application skips the activation. ``none`` is the official
default.
"""

from __future__ import annotations

import torch
from torch import nn

KINDS = ("none", "depthwise", "bottleneck")
ACTIVATIONS = {"relu": nn.ReLU, "lrelu": nn.LeakyReLU, "tanh": nn.Tanh}


class SpatialRegularization(nn.Module):
    def __init__(self, kind: str = "none", depth: int = 2, activation: str = "lrelu") -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"unknown spatial regularization '{kind}'; known: {', '.join(KINDS)}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation '{activation}'; known: {', '.join(ACTIVATIONS)}")
        if depth < (0 if kind == "none" else 1):  # 0 with no block, as the official code allows
            raise ValueError(f"block depth must be >= 1 with a '{kind}' block (0 only with none), "
                             f"got {depth}")
        self.kind, self.depth = kind, depth
        self.conv = nn.Conv2d(1, 1, kernel_size=3, padding=1) if kind != "none" else None
        self.activation = ACTIVATIONS[activation]()

    def block(self, x: torch.Tensor, activate: bool) -> torch.Tensor:
        b, n, h, w = x.shape
        out = self.conv(x.reshape(b * n, 1, h, w)).reshape(b, n, h, w)
        if self.kind == "bottleneck":
            out = out + x.amax(1, keepdim=True)
        return self.activation(out) if activate else out

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        """[B, N, h, w] -> [B, N, h, w] (unchanged for ``none``)."""
        if self.conv is None:
            return logits
        for i in range(self.depth):
            logits = self.block(logits, activate=i < self.depth - 1)
        return logits
