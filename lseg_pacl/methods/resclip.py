"""ResCLIP (Yang et al., CVPR 2025): NACLIP's last block, corrected twice: by the attention of middle layers
(RCS) and by a first segmentation of the window fed back into the attention (SFR).

Why: the last block's k-k attention (NACLIP) localises, but each patch still attends to patches of other
objects. The paper finds the middle layers' q-k attention better localised and borrows it (RCS), and lets
a first pass that labels the patches tell the block which patches belong together (SFR). Official code:
yvhangyang/ResCLIP@0e085f7, ``clip/model.py`` (m.py below) and ``resclip_segmentor.py``; the paper's base is
NACLIP (README ``test_all.sh wo_resi resclip 5``: no residual, no FFN, Gaussian prior sigma 5).

The last block, per window (batch-first tokens x entering it, heads h, K = keys of ln_1(x), d = head width):
  Omega      NACLIP's Gaussian neighbourhood prior over the patch grid (m.py:464-471, 398-424);
  A_rcs      mean over ``rcs_layers`` (1-based; 6-9 at ViT-B/16) of softmax(q k^T / sqrt(d)), per head
             (m.py:316-329);
  pass 1     P = softmax(K K^T / sqrt(d) + Omega), A = tau_r [(1 - lambda_r) P + lambda_r A_rcs],
             out_proj(A V) -> ln_post, projection -> cosine to every text -> bilinear to the window ->
             PAMR(10, (8, 16)) guided by the window -> softmax(40 x) over the texts (m.py:242-290);
  labels     per pixel the argmax over texts, 0 where the top probability is below ``temp_thd``; per patch
             the most frequent pixel label (m.py:106-126). A label is a text index, not a class index, so
             synonyms of one class count as different labels, and 0 means both "text 0" and "unsure";
  SFR        M_ij = [l_i = l_j]; with ``delete_same_entity``, a pair whose straight path (below) leaves the
             label l_i is decayed by exp(-s_ij / S), s_ij the Chebyshev distance, S its maximum over all
             pairs; each row blurred by a 1-D Gaussian (sigma = ``gaussian_std``, length min(N, int(6 sigma +
             1)) made odd, zero padding) along the row-major patch index; ReLU; rows divided by (sum + 1e-8);
             CLS row and column 0 (m.py:152-240). The path of pair (i, j) is the points round(c_i (1 - t_k) +
             c_j t_k), t_k = k / S, k = 0..s_ij: only the first s_ij / S of the segment when s_ij < S, as
             coded (m.py:132-148), computed in float32 as there, so that halves round as they do there;
  final      A_sfr = SFR / max(SFR), shared by the heads; P = softmax(tau_s [(1 - lambda_s) K K^T / sqrt(d)
             + lambda_s A_sfr] + Omega); A = tau_r [(1 - lambda_r) P + lambda_r A_rcs]; out_proj(A V), no
             residual, no FFN (m.py:349-362, 473-494, 597-599).
``use_rcs=False`` drops A_rcs (and tau_r) from both passes, ``use_sfr=False`` skips pass 1 and the SFR term
(and tau_s); both off is NACLIP's block.

Where this differs from the official code, deliberately:
- The switches work. The official constructor stores ``self.use_rcs=use_rcs,`` (a trailing comma: a
  one-element tuple, always true; resclip_segmentor.py:61-62), so RCS and SFR can never be turned off there.
  The ``paper`` preset keeps both on, so it runs what the official code runs.
- The SFR matrix stays in the computation's dtype; the official code casts it to fp16 even in fp32 runs
  (m.py:478), a change of about 4e-6 in the logits.
- PAMR of pass 1 is not wrapped in a ``try/except RuntimeError`` that silently skips it (m.py:280-284).
- Any batch size (the official pass 1 handles one image: m.py:108, 286-288); each image has its own SFR.
- The official PAMR guide of pass 1 is the whole window, including the pixels beyond its last whole patch.
  This interface passes only the whole patches (``remainder: drop``, evaluation/inference.py) and the window's
  size: pass 1 is brought to that size as there, and the guide is the window padded by replicating its last
  row/column. Windows whose sides divide by the patch (every 224 slide window) are unaffected.
- Ties in a patch's most frequent label go to the smallest label (what ``torch.mode`` does on the CPU; the
  official code runs it on CUDA).
- The official code runs CLIP in fp16 on CUDA (``clip.load``); here everything runs in the dtype given, the
  softmaxes in at least float32.
``first_pass_logit_scale`` is the official segmentor's ``logit_scale`` (resclip_segmentor.py:25, :75), which
also scales the final softmax there; this interface cannot see the protocol's, so it is an option of its own
(40 in both places in every official config). ``delete_same_entity`` defaults to True although the
constructor's default is False (resclip_segmentor.py:26): every official config sets it (cfg_*.py:7-9).
Defaults of tau/lambda/temp_thd: configs/cfg_voc21.py:8-11 (the constructor has none).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from lseg_pacl.evaluation.pamr import pamr
from lseg_pacl.methods.base import TrainingFreeMethod
from lseg_pacl.models.clip import ClipBackbone
from lseg_pacl.models.last_block import neighbourhood_prior
from lseg_pacl.models.trunk import NOTHING, Needs, Trunk
from lseg_pacl.models.zeroshot import zero_shot_logits

__all__ = ["ResCLIP", "patch_labels", "sfr_matrix"]


def _is_number(v: object) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _is_int(v: object) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _check_options(o: dict[str, Any]) -> None:
    """Refuse values the method cannot run with, at config time (config/validation.py builds the method)."""
    for key in ("tau_r", "lambda_r", "tau_s", "lambda_s", "temp_thd", "first_pass_logit_scale"):
        if not _is_number(o[key]):
            raise ValueError(f"ResCLIP option {key} must be a number, got {o[key]!r}")
    if not _is_number(o["gaussian_std"]) or o["gaussian_std"] <= 0:
        raise ValueError(f"ResCLIP option gaussian_std must be a positive number, got {o['gaussian_std']!r}")
    for key in ("use_rcs", "use_sfr", "delete_same_entity"):
        if not isinstance(o[key], bool):
            raise ValueError(f"ResCLIP option {key} must be true or false, got {o[key]!r}")
    layers = o["rcs_layers"]
    if isinstance(layers, (str, bytes)) or not isinstance(layers, Sequence) or not layers \
            or not all(_is_int(v) and v >= 1 for v in layers):
        raise ValueError(f"ResCLIP option rcs_layers must be a non-empty list of 1-based block indices, got "
                         f"{layers!r}")
    if not _is_int(o["first_pass_pamr_iterations"]) or o["first_pass_pamr_iterations"] < 0:
        raise ValueError("ResCLIP option first_pass_pamr_iterations must be an integer >= 0, got "
                         f"{o['first_pass_pamr_iterations']!r}")
    dils = o["first_pass_pamr_dilations"]
    if isinstance(dils, (str, bytes)) or not isinstance(dils, Sequence) or not dils \
            or not all(_is_int(v) and v > 0 for v in dils):
        raise ValueError(f"ResCLIP option first_pass_pamr_dilations must be a non-empty list of positive "
                         f"integers, got {dils!r}")


def _keys_values(block: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """k and v [B, heads, N, head_dim] of the block's attention on ln_1(x) (its packed in_proj)."""
    attn = block.attn
    b, n, width = x.shape
    heads = attn.num_heads
    qkv = F.linear(block.ln_1(x), attn.in_proj_weight, attn.in_proj_bias)
    _, k, v = qkv.reshape(b, n, 3, heads, width // heads).permute(2, 0, 3, 1, 4)
    return k, v


def _straight_paths(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """For every patch pair (i, j) of a label grid [rows, cols]: whether the path's points (module docstring)
    all carry l_i [N, N], the Chebyshev distances s_ij [N, N], and their maximum S."""
    rows, cols = labels.shape
    index = torch.arange(rows * cols, device=labels.device)
    coords = torch.stack([index // cols, index % cols], dim=-1)  # row-major
    start, end = coords[:, None, :], coords[None, :, :]
    steps = (end - start).abs().amax(-1)
    longest = int(steps.max())
    flat = labels.flatten()
    t = torch.linspace(0, 1, longest + 1, dtype=torch.float32, device=labels.device)  # float32 as m.py:137
    start_f, end_f = start.to(torch.float32), end.to(torch.float32)
    valid = torch.ones_like(steps, dtype=torch.bool)
    for k in range(longest + 1):
        point = (start_f * (1 - t[k]) + end_f * t[k]).round().long()
        on_label = labels[point[..., 0], point[..., 1]] == flat[:, None]
        valid &= on_label | (k > steps)
    return valid, steps, longest


def sfr_matrix(labels: torch.Tensor, sigma: float, delete_same_entity: bool = True,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """SFR's affinity [1 + N, 1 + N] (CLS first, row 0 and column 0 zero) from a patch label grid [rows,
    cols]: same-label pairs, decayed where the straight path leaves the label, rows Gaussian-blurred along the
    row-major patch index, ReLU, row-normalised (module docstring; m.py:152-240)."""
    flat = labels.flatten()
    n = flat.numel()
    same = (flat[:, None] == flat[None, :]).to(dtype)
    if delete_same_entity:
        valid, steps, longest = _straight_paths(labels)
        decay = torch.exp(-steps.to(dtype) / max(longest, 1))
        same = torch.where(valid, same, same * decay)
    size = min(n, int(6 * sigma + 1))
    size = size if size % 2 else size + 1
    x = torch.arange(size, device=labels.device, dtype=dtype) - size // 2
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    blurred = F.conv1d(same[:, None], kernel.view(1, 1, -1), padding=size // 2)[:, 0].relu()
    rows = blurred / (blurred.sum(1, keepdim=True) + 1e-8)
    return F.pad(rows, (1, 0, 1, 0))


def patch_labels(probabilities: torch.Tensor, grid: tuple[int, int], patch: int,
                 temp_thd: float) -> torch.Tensor:
    """Per-patch labels [B, rows, cols] from per-text probabilities [B, T, H, W] over a window: the pixel
    argmax over texts (0 where the top probability is below ``temp_thd``), then the most frequent label in
    each patch's pixels, the smallest on ties (m.py:106-126)."""
    b, texts = probabilities.shape[:2]
    rows, cols = grid
    top, label = probabilities.amax(1), probabilities.argmax(1)
    label = torch.where(top < temp_thd, torch.zeros_like(label), label)
    label = label[:, : rows * patch, : cols * patch].reshape(b, rows, patch, cols, patch)
    label = label.permute(0, 1, 3, 2, 4).reshape(b, rows, cols, patch * patch)
    counts = torch.zeros(b, rows, cols, texts, dtype=torch.int64, device=label.device)
    counts.scatter_add_(-1, label, torch.ones_like(label))
    return counts.argmax(-1)  # the first maximum: the smallest label


class ResCLIP(TrainingFreeMethod):
    """ResCLIP's last block (module docstring); defaults: the official constructor, configs/cfg_voc21.py."""

    defaults: ClassVar[dict[str, Any]] = {
        "tau_r": 2.0,  # configs/cfg_voc21.py:10 attn_rcs_weights=[2.0, 0.3]
        "lambda_r": 0.3,
        "tau_s": 2.2,  # configs/cfg_voc21.py:11 attn_sfr_weights=[2.2, 0.7]
        "lambda_s": 0.7,
        "temp_thd": 0.5,  # configs/cfg_voc21.py:8
        "rcs_layers": [6, 7, 8, 9],  # m.py:327-329 attn_map[5..8]: blocks 6-9 (ViT-B/16)
        "gaussian_std": 5.0,  # resclip_segmentor.py:24; README test_all.sh ... resclip 5
        "delete_same_entity": True,  # configs/cfg_*.py:7-9, all 8 (the constructor's: False)
        "first_pass_pamr_iterations": 10,  # m.py:279 PAMR(10, dilations=(8, 16))
        "first_pass_pamr_dilations": [8, 16],
        "first_pass_logit_scale": 40.0,  # resclip_segmentor.py:25 logit_scale=40, passed at :75
        "use_rcs": True,  # resclip_segmentor.py:24 (always on there: :61 stores a tuple)
        "use_sfr": True,  # resclip_segmentor.py:24 (always on there: :62)
    }

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        _check_options(self.options)

    def needs(self) -> Needs:
        """The attention maps of ``rcs_layers`` when RCS is on."""
        if not self.options["use_rcs"]:
            return NOTHING
        return Needs(attentions=frozenset(int(v) for v in self.options["rcs_layers"]))

    def _rcs(self, trunk: Trunk, dtype: torch.dtype) -> torch.Tensor | None:
        if not self.options["use_rcs"]:
            return None
        layers = [int(v) for v in self.options["rcs_layers"]]
        bad = [v for v in layers if not 1 <= v <= trunk.layers - 1]
        if bad:
            raise ValueError(f"ResCLIP rcs_layers {layers}: blocks {bad} are not among this CLIP's blocks "
                             f"1..{trunk.layers - 1} before its last (it has {trunk.layers})")
        missing = [v for v in layers if v not in trunk.attentions]
        if missing:
            raise ValueError(f"ResCLIP needs the attention maps of blocks {missing}; the trunk was run "
                             "without them (clip.trunk(images, method.needs()))")
        return torch.stack([trunk.attentions[v] for v in layers]).mean(0).to(dtype)

    def _mix_rcs(self, p: torch.Tensor, rcs: torch.Tensor | None) -> torch.Tensor:
        if rcs is None:
            return p
        o = self.options
        return o["tau_r"] * ((1 - o["lambda_r"]) * p + o["lambda_r"] * rcs)

    def _first_pass_labels(self, clip: ClipBackbone, dense: torch.Tensor, grid: tuple[int, int],
                           image: torch.Tensor, text: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Pass 1's patch labels [B, rows, cols]: cosines at the window's size, PAMR along the window, softmax
        over the texts."""
        o = self.options
        cos = zero_shot_logits(dense, grid, text, size)
        guide = image
        if tuple(image.shape[-2:]) != tuple(size):  # remainder: drop (module docstring)
            pad = (0, size[1] - image.shape[-1], 0, size[0] - image.shape[-2])
            guide = F.pad(image, pad, mode="replicate")
        iterations = int(o["first_pass_pamr_iterations"])
        if iterations:
            cos = pamr(guide, cos, iterations, [int(d) for d in o["first_pass_pamr_dilations"]])
        probabilities = torch.softmax(o["first_pass_logit_scale"] * cos, dim=1)
        return patch_labels(probabilities, grid, clip.patch_size, o["temp_thd"])

    def logits(self, clip: ClipBackbone, trunk: Trunk, image: torch.Tensor, text: torch.Tensor,
               size: tuple[int, int]) -> torch.Tensor:
        o = self.options
        visual = clip.model.visual
        block = list(visual.transformer.resblocks)[-1]
        x, grid = trunk.x, tuple(trunk.grid)
        k, v = _keys_values(block, x)
        kk = k @ k.transpose(-2, -1) * k.shape[-1] ** -0.5
        kk = kk.to(torch.promote_types(kk.dtype, torch.float32))
        omega = neighbourhood_prior(grid, float(o["gaussian_std"]), kk.device, kk.dtype)
        rcs = self._rcs(trunk, kk.dtype)

        def dense(attn: torch.Tensor) -> torch.Tensor:
            b, heads, n, d = v.shape
            y = (attn.to(v.dtype) @ v).transpose(1, 2).reshape(b, n, heads * d)
            tokens = visual.ln_post(block.attn.out_proj(y).to(x.dtype))
            return clip.project(tokens[:, 1:])

        scores = kk
        if o["use_sfr"]:
            first = dense(self._mix_rcs(torch.softmax(kk + omega, dim=-1), rcs))
            with torch.autocast(device_type=kk.device.type, enabled=False):
                labels = self._first_pass_labels(clip, first, grid, image, text, size)
                sigma, delete = float(o["gaussian_std"]), o["delete_same_entity"]
                sfr = torch.stack([sfr_matrix(lab, sigma, delete, kk.dtype) for lab in labels])
                sfr = sfr / sfr.amax((-2, -1), keepdim=True)
            scores = o["tau_s"] * ((1 - o["lambda_s"]) * kk + o["lambda_s"] * sfr[:, None])
        attn = self._mix_rcs(torch.softmax(scores + omega, dim=-1), rcs)
        return zero_shot_logits(dense(attn), grid, text, size)
