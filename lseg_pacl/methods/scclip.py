"""SC-CLIP (Bai et al., "Self-Calibrated CLIP for Training-Free Open-Vocabulary Segmentation"): a few anomaly
tokens draw everybody's attention in CLIP, and its last block ignores how well the intermediate layers already
group the image. SC-CLIP repairs the anomalies, lets the intermediate layers' own similarities pre-adjust,
steer and post-adjust the last block, and fuses several intermediate levels.

Official code: SuleBai/SC-CLIP@0417ba9, ``clip/model.py`` (m.py) ``VisionTransformer.forward`` :254-316.
With F_l the output (residual stream) of block l, 1-based, and L blocks (F_{L-1} = ``trunk.x``):

1. Anomaly tokens (m.py:269-278, ``lof_pytorch`` :208-227, ``mean_interpolation`` :348-373): a local outlier
   factor over F_{L-1}'s patch tokens with squared L2 distances, ``lof_k`` neighbours (self excluded),
   reach = max(d(p, o), kdist(p)) as coded (kdist of p, not of o: the official variant), LRD = k / mean reach,
   LOF = mean over neighbours of LRD_o / LRD_p; tokens with LOF above the ``lof_quantile`` quantile are
   replaced by the mean of their non-outlier 8-neighbours (zero padding; kept if they have none). The CLS
   token leaves the stream here (m.py:276-278).
2. Pre-adjustment (m.py:280-288, ``adaptively_aggregate`` :343-346): S = cosine similarity of F_pre's patches
   (repaired at the same positions); the patches become rownorm(S with S < ``beta`` set to 0) @ patches,
   rownorm = / (row sum + 1e-6).
3. Last block (m.py:290-291, ``custom_attn`` :318-341): Attn(ln_1 X) + ``res_cls`` * CLS(F_{L-1}) with
   Attn = out_proj(A V), A = (softmax(M) + softmax(K K^T / sqrt(d))) / 2 for every head, M = 3 (S - mean S),
   M < 0 -> -inf; no residual, no FFN.
4. Post-adjustment (m.py:293-297): the same aggregation with F_post's patch similarities (not repaired).
5. Multi-level fusion (m.py:299-306): R = sum of F_l over ``multi_layers``; X += rownorm(S_post) @
   [Attn(ln_1 R_patches) + res_cls * CLS(R)]. Then ln_post and the projection; no CLS in the output
   (scclip_segmentor.py:70-72).

Options count blocks from 1, as the paper does. The official indices are 0-based into the outputs of blocks
1..L-1: configs/base_config.py:4-7 ``pre_adjust_idx=8, post_adjust_idx=3, multi_start_idx=3,
multi_end_idx=10`` are blocks 9, 4 and 4..10 of ViT-B/16 here (the defaults). The ViT-L/14 values of the
first commit 74471da (``16, 6, 8, 19``, res_cls 0.1) are blocks 17, 7 and 9..19.

Where this differs from the official code, on purpose:
- Non-square windows: the official code puts a repaired token at row idx // rows, col idx % rows
  (m.py:275). That is right for square windows only: elsewhere the positions are wrong, or it raises an
  IndexError (224x320). Here every token keeps its own place on any grid. The ``paper`` preset runs
  224x224 windows only (slide everywhere), where both agree.
- The LOF threshold: the official quantile is taken in float32 (m.py:222). Here it is taken in the tokens'
  dtype, at least float32: float32 and fp16 runs follow the official rule, float64 runs are exact. This
  matters where (T - 1) * lof_quantile is whole (441 patches: 336x336 windows). There float32 rounding alone
  can make the token at the quantile an outlier. It does not matter at the preset's 196 patches.
- Self is excluded from the neighbours explicitly; the official drops the first of the k+1 nearest (the same
  unless two tokens coincide).
- Batches: the official code runs one window at a time (``squeeze(1)``, one mean of S); here every window of
  a batch has its own outliers, quantile and mean of S.
- ``multi_layers: []`` switches the fusion off; an empty official range would still add Attn(ln_1 0).
- Precision: the official ViT runs in fp16 on CUDA (``clip.load``), the LOF included. Here everything runs
  in the dtype given; under fp16 autocast the pairwise distances (``cdist``) and the softmaxes run in float32.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from lseg_pacl.methods.base import TrainingFreeMethod
from lseg_pacl.models.clip import ClipBackbone
from lseg_pacl.models.trunk import Needs, Trunk
from lseg_pacl.models.zeroshot import zero_shot_logits

PRIOR_SCALE = 3.0  # m.py:329 (mid_simi - mean) * 3.0
ROW_EPS = 1e-6  # m.py:344 corrs.sum + 1e-6


def lof_outliers(tokens: torch.Tensor, k: int, quantile: float) -> torch.Tensor:
    """Anomaly tokens [B, T] (bool) of tokens [B, T, C] by SC-CLIP's local outlier factor (m.py:208-227):
    those whose LOF exceeds the ``quantile`` of the window's LOFs."""
    b, t, _ = tokens.shape
    dist = torch.cdist(tokens, tokens, compute_mode="donot_use_mm_for_euclid_dist").square()
    self_mask = torch.eye(t, dtype=torch.bool, device=tokens.device)
    knn, index = dist.masked_fill(self_mask, float("inf")).topk(k, dim=-1, largest=False)
    reach = torch.maximum(knn, knn[..., -1:])  # max(d(p, o), kdist(p)), as coded (m.py:214-215)
    lrd = k / reach.mean(-1)
    lof = (lrd.gather(1, index.flatten(1)).view(b, t, k) / lrd[..., None]).mean(-1)
    threshold = torch.quantile(lof.to(torch.promote_types(lof.dtype, torch.float32)), quantile, dim=-1,
                               keepdim=True)
    return lof > threshold


def _neighbour_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum of the 8 neighbours of every cell of x [B, C, H, W], zero outside the grid."""
    h, w = x.shape[-2:]
    padded = F.pad(x, (1, 1, 1, 1))
    return sum(padded[..., 1 + dy:1 + dy + h, 1 + dx:1 + dx + w]
               for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx)


def repair_tokens(tokens: torch.Tensor, outliers: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Patch tokens [B, T, C] (row-major on ``grid``) with each outlier replaced by the mean of its
    non-outlier 8-neighbours, kept where it has none (m.py:348-373)."""
    b, t, c = tokens.shape
    fmap = tokens.transpose(1, 2).reshape(b, c, *grid)
    keep = (~outliers).to(tokens.dtype).view(b, 1, *grid)
    count = _neighbour_sum(keep)
    mean = _neighbour_sum(fmap * keep) / count.clamp_min(1)
    update = outliers.view(b, 1, *grid) & (count > 0)
    return torch.where(update, mean, fmap).reshape(b, c, t).transpose(1, 2)


def cosine_similarity(tokens: torch.Tensor) -> torch.Tensor:
    """[B, T, T] cosines between the tokens of each window."""
    unit = tokens / tokens.norm(dim=-1, keepdim=True)
    return unit @ unit.transpose(-2, -1)


def aggregate(similarity: torch.Tensor, beta: float, tokens: torch.Tensor) -> torch.Tensor:
    """Each token replaced by the mean of the tokens at least ``beta``-similar to it, weighted by similarity
    (m.py:287-288, 296-297, 343-346)."""
    weights = similarity.masked_fill(similarity < beta, 0.0)
    weights = weights / (weights.sum(-1, keepdim=True) + ROW_EPS)
    return weights.to(tokens.dtype) @ tokens


def calibrated_attention(block: nn.Module, x: torch.Tensor, similarity: torch.Tensor) -> torch.Tensor:
    """The last block's attention alone on patch tokens x [B, T, width] (ln_1 applied here): heads share the
    intermediate-similarity prior softmax(M) and add their own softmax(K K^T / sqrt(d)), halved
    (m.py:318-341)."""
    attn = block.attn
    b, t, width = x.shape
    heads = attn.num_heads
    qkv = F.linear(block.ln_1(x), attn.in_proj_weight, attn.in_proj_bias)
    _, k, v = qkv.reshape(b, t, 3, heads, width // heads).permute(2, 0, 3, 1, 4)
    dtype = torch.promote_types(k.dtype, torch.float32)
    prior = (similarity - similarity.mean(dim=(-2, -1), keepdim=True)) * PRIOR_SCALE
    prior = prior.masked_fill(prior < 0, float("-inf"))
    weights = prior[:, None].softmax(-1, dtype=dtype) + (
        k @ k.transpose(-2, -1) * (width // heads) ** -0.5).softmax(-1, dtype=dtype)
    weights = weights / 2
    y = (weights.to(v.dtype) @ v).transpose(1, 2).reshape(b, t, width)
    return attn.out_proj(y)


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


class SCCLIP(TrainingFreeMethod):
    """SC-CLIP's last block with anomaly repair, similarity adjustments and multi-level fusion."""

    defaults: ClassVar[dict[str, Any]] = {
        "pre_adjust_layer": 9,  # configs/base_config.py:4 pre_adjust_idx=8 (0-based)
        "post_adjust_layer": 4,  # configs/base_config.py:5 post_adjust_idx=3
        "multi_layers": [4, 5, 6, 7, 8, 9, 10],  # base_config.py:6-7 range(3, 10); m.py:300
        "res_cls": 0.3,  # configs/base_config.py:8
        "beta": 0.4,  # m.py:247
        "lof_k": 30,  # m.py:274 n_neighbors=30
        "lof_quantile": 0.95,  # m.py:222, 274: 1 - contamination (0.05)
        "resolve_anomalies": True,  # the paper's first step; off: no LOF, no repair (an ablation)
    }

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        o = self.options
        for key in ("pre_adjust_layer", "post_adjust_layer", "lof_k"):
            if not _is_int(o[key]) or o[key] < 1:
                raise ValueError(f"SCCLIP option {key} must be a positive integer, got {o[key]!r}")
        layers = o["multi_layers"]
        if isinstance(layers, str) or not isinstance(layers, Sequence) or not all(
                _is_int(x) and x >= 1 for x in layers):
            raise ValueError(f"SCCLIP option multi_layers must be a list of positive block numbers, got "
                             f"{layers!r}")
        if len(set(layers)) != len(layers):
            raise ValueError(f"SCCLIP option multi_layers names a block twice: {list(layers)}")
        for key in ("res_cls", "beta"):
            if not _is_real(o[key]):
                raise ValueError(f"SCCLIP option {key} must be a number, got {o[key]!r}")
        if not _is_real(o["lof_quantile"]) or not 0 < o["lof_quantile"] < 1:
            raise ValueError(f"SCCLIP option lof_quantile must lie strictly between 0 and 1, got "
                             f"{o['lof_quantile']!r}")
        if not isinstance(o["resolve_anomalies"], bool):
            raise ValueError(f"SCCLIP option resolve_anomalies must be true or false, got "
                             f"{o['resolve_anomalies']!r}")

    def _blocks(self) -> dict[str, list[int]]:
        o = self.options
        return {"pre_adjust_layer": [o["pre_adjust_layer"]], "post_adjust_layer": [o["post_adjust_layer"]],
                "multi_layers": list(o["multi_layers"])}

    def needs(self) -> Needs:
        """The outputs of the pre-adjustment, post-adjustment and fused blocks."""
        return Needs(outputs=frozenset(x for blocks in self._blocks().values() for x in blocks))

    def _check(self, trunk: Trunk) -> None:
        last = trunk.layers - 1
        for key, blocks in self._blocks().items():
            if any(x > last for x in blocks):
                raise ValueError(f"SCCLIP option {key}={self.options[key]} names blocks beyond this CLIP's "
                                 f"1..{last} (it has {trunk.layers} blocks; the last is the one SC-CLIP "
                                 f"rewrites)")
            missing = [x for x in blocks if x not in trunk.outputs]
            if missing:
                raise ValueError(f"the trunk kept no output of block(s) {missing}: build it with "
                                 "SCCLIP.needs()")
        patches = trunk.grid[0] * trunk.grid[1]
        if self.options["resolve_anomalies"] and self.options["lof_k"] >= patches:
            raise ValueError(f"SCCLIP option lof_k={self.options['lof_k']} needs more than that many patches "
                             f"per window; this window has {patches} ({trunk.grid[0]}x{trunk.grid[1]})")

    def logits(self, clip: ClipBackbone, trunk: Trunk, image: torch.Tensor, text: torch.Tensor,
               size: tuple[int, int]) -> torch.Tensor:
        self._check(trunk)
        o, grid = self.options, trunk.grid
        visual = clip.model.visual
        block = visual.transformer.resblocks[-1]
        cls, x = trunk.x[:, :1], trunk.x[:, 1:]
        pre = trunk.outputs[o["pre_adjust_layer"]][:, 1:]
        if o["resolve_anomalies"]:
            outliers = lof_outliers(x, o["lof_k"], o["lof_quantile"])
            x, pre = repair_tokens(x, outliers, grid), repair_tokens(pre, outliers, grid)
        similarity = cosine_similarity(pre)
        x = aggregate(similarity, o["beta"], x)
        x = calibrated_attention(block, x, similarity) + o["res_cls"] * cls
        post = cosine_similarity(trunk.outputs[o["post_adjust_layer"]][:, 1:])
        x = aggregate(post, o["beta"], x)
        if o["multi_layers"]:
            fused = sum(trunk.outputs[layer] for layer in o["multi_layers"])
            y = calibrated_attention(block, fused[:, 1:], similarity) + o["res_cls"] * fused[:, :1]
            x = x + aggregate(post, o["beta"], y)
        return zero_shot_logits(clip.project(visual.ln_post(x)), grid, text, size)
