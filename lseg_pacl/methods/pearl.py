"""PEARL (Pei et al., CVPR'26): Procrustes alignment in CLIP's last attention, then a text-aware Laplacian
propagation of the logits. Official code: PGSmall/PEARL@c26062b.

Why: in CLIP's last block the keys live in a subspace rotated away from the queries', so q-k attention
scatters over unrelated patches. PEARL rotates the keys onto the queries (an orthogonal Procrustes fit) before
the usual q-k product and adds a little centred k-k similarity; the logits are then smoothed on an
edge-aware pixel graph whose data term trusts confident pixels.

Last block (arch ``reduced``: out_proj of the attention alone, no residual, no FFN; clip/model.py:124-125),
per head, CLS included (pearl/attn.py:22-78):
  w_i = |q_i| (CLS 0), normalised by (sum + 1e-6); q_c = q - sum_i w_i q_i, k_c likewise (attn.py:41-49);
  R = polar factor of M = k_c^T q_c by ``newton_schulz_steps`` coupled Newton-Schulz steps on
  M^T M / |M^T M|_F + 1e-6 I (attn.py:5-19, 51-53), or by an SVD (``align_solver: svd``, attn.py:54-59);
  logits = (q / sqrt(d)) (k R)^T + alpha_kk k_c k_c^T / sqrt(d) (attn.py:63-68); softmax; times v.
The five default steps are not converged (an exact SVD factor differs by ~12%, method-notes §8.7): they are
reproduced as they are, since they define the method's numbers. ``attention: vanilla`` is the official
ablation (``--attn vanilla``, clip/model.py:281-298): plain q-k softmax in the reduced block (computed in
fp16 there, in at least float32 here).

Propagation (TLP, pearl/prop.py; ``propagation``): per-text cosines F at the window's pixels, P =
softmax(F) over texts (no logit scale), a grid of about ``tlp_grid`` cells a side by average pooling
(prop.py:53-57, 144-152), text similarity S = rownorm(softmax(t t^T / tlp_temperature) + tlp_diag_boost I)
(prop.py:43-51), confidence weights C = max(max_c P, 0.05)^2 (1 + agreement), edge weights exp(-tlp_edge
|grad gray| / mean) times a neighbour-agreement gain, clamped to [0, 1] (prop.py:67-96), then
``tlp_cg_iters`` conjugate-gradient steps from F on (C + tlp_smoothness L) X = C F (prop.py:98-170), and
bilinear back. Official quirk, reproduced: ``einsum('cc,bcij->bcij', S, P)`` (prop.py:63, 79, 84) reads only
the diagonal of S, so agreement is sum_c S_cc P_c^2, not P^T S P.

Where this differs from the official code, on purpose:
TLP runs where the official code runs it (pearl_ovss.py:165-179): once per image, in ``refine`` (the
method interface's image-level step), on the window-merged per-text cosines at the original size, guided by
the normalised input bilinearly resized back to it.

Where this differs from the official code, on purpose:
- The edge normalisation (gradient / its mean, prop.py:71-72) is taken per image, not over the whole batch, so
  an image's result does not depend on its batch-mates (identical at the official batch size 1).
- The SVD solver's fallback to the identity on an exception (attn.py:57-59) is not reproduced.
Precision: the official CLIP runs fp16 on CUDA (clip.load), but pa_attn and TLP upcast to float32
(attn.py:36, prop.py:146-151); here both run with autocast off in at least float32 (float64 stays float64).
``alpha_kk: 0`` is the official ``use_kk=False``. The `paper` preset (experiments/presets/paper/pearl.yaml)
turns TLP on as README/run.sh do (eval.py defaults it off) and sets alpha_kk 0.3 on ADE20K and Cityscapes,
tlp_grid 224 on Cityscapes.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from lseg_pacl.methods.base import TrainingFreeMethod
from lseg_pacl.models.clip import ClipBackbone
from lseg_pacl.models.trunk import Trunk
from lseg_pacl.models.zeroshot import zero_shot_logits

__all__ = ["PEARL", "laplacian_propagation", "pearl_attention", "procrustes_rotation"]

ATTENTIONS = ("pearl", "vanilla")
SOLVERS = ("polar", "svd")
_EPS = 1e-6  # attn.py:9-10, 44, 53 and prop.py:32 (TLP's eps)


def _wide(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.promote_types(t.dtype, torch.float32))


def procrustes_rotation(m: torch.Tensor, steps: int = 5, solver: str = "polar") -> torch.Tensor:
    """The orthogonal factor R of m [..., d, d] (m = U S V^T -> U V^T), as PEARL computes it: ``steps``
    coupled Newton-Schulz iterations for (m^T m)^(-1/2) on the Frobenius-normalised m^T m + 1e-6 I, then m
    times it (attn.py:5-19); or an exact SVD (attn.py:55-56)."""
    if solver == "svd":
        u, _, vh = torch.linalg.svd(m, full_matrices=False)
        return u @ vh
    eye = torch.eye(m.shape[-1], device=m.device, dtype=m.dtype)
    a = m.transpose(-2, -1) @ m
    norm = a.flatten(-2).norm(dim=-1).clamp_min(_EPS)[..., None, None]
    y = a / norm + _EPS * eye
    z = eye.expand_as(a)
    for _ in range(steps):
        t = 0.5 * (3.0 * eye - z @ y)
        y = y @ t
        z = t @ z
    return m @ (z / norm.sqrt())


def pearl_attention(q: torch.Tensor, k: torch.Tensor, alpha_kk: float = 0.08, steps: int = 5,
                    solver: str = "polar") -> torch.Tensor:
    """Attention probabilities [..., N, N] from q, k [..., N, d] (token 0 = CLS): q against the keys rotated
    onto the queries, plus alpha_kk times the centred k-k logits (attn.py:35-70)."""
    scale = q.shape[-1] ** -0.5
    w = q.norm(dim=-1, keepdim=True)
    w = torch.cat([torch.zeros_like(w[..., :1, :]), w[..., 1:, :]], dim=-2)  # CLS weight 0 (attn.py:42-43)
    w = w / (w.sum(dim=-2, keepdim=True) + _EPS)
    q_c = q - (w * q).sum(dim=-2, keepdim=True)
    k_c = k - (w * k).sum(dim=-2, keepdim=True)
    r = procrustes_rotation(k_c.transpose(-2, -1) @ q_c, steps, solver)
    logits = (q * scale) @ (k @ r).transpose(-2, -1)
    if alpha_kk:
        logits = logits + alpha_kk * ((k_c @ k_c.transpose(-2, -1)) * scale)
    return logits.softmax(dim=-1)


def _last_block(block: nn.Module, x: torch.Tensor, options: dict[str, Any]) -> torch.Tensor:
    """The reduced last block: out_proj(attention @ v) on ln_1(x), batch-first [B, N, width] in and out."""
    attn = block.attn
    b, n, width = x.shape
    heads = attn.num_heads
    qkv = F.linear(block.ln_1(x), attn.in_proj_weight, attn.in_proj_bias)
    q, k, v = qkv.reshape(b, n, 3, heads, width // heads).permute(2, 0, 3, 1, 4)
    with torch.autocast(device_type=x.device.type, enabled=False):
        q, k, v32 = _wide(q), _wide(k), _wide(v)
        if options["attention"] == "vanilla":
            probs = ((q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)).softmax(dim=-1)
        else:
            probs = pearl_attention(q, k, options["alpha_kk"], options["newton_schulz_steps"],
                                    options["align_solver"])
        out = (probs @ v32).to(v.dtype)
    return attn.out_proj(out.transpose(1, 2).reshape(b, n, width))


# ---------------------------------------------------------------------------------------------- propagation


def _scale_of(side: int, grid: float) -> int:
    """Pooling factor for one side (prop.py:53-57): Python's round, so 2.5 -> 2."""
    return int(max(1, round(side / float(grid))))


def _diagonal_similarity(text: torch.Tensor, temperature: float, diag_boost: float) -> torch.Tensor:
    """diag(S) [C]: S = softmax(cos / temperature) rows, + diag_boost I, rows renormalised (prop.py:43-51);
    only the diagonal is ever read (prop.py:63, 79, 84)."""
    t = F.normalize(text, dim=-1)
    s = torch.softmax((t @ t.t()) / max(temperature, _EPS), dim=1)
    if diag_boost > 0:
        s = s + diag_boost * torch.eye(s.shape[0], device=s.device, dtype=s.dtype)
        s = s / (s.sum(dim=1, keepdim=True) + _EPS)
    return s.diagonal()


def _edge_weights(gray: torch.Tensor, probs: torch.Tensor, sdiag: torch.Tensor,
                  edge: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights of the horizontal [B, 1, H, W-1] and vertical [B, 1, H-1, W] pixel links (prop.py:67-96):
    exp(-edge x normalised gray gradient) x (1 + neighbour agreement), clamped to [0, 1]."""
    dims = (1, 2, 3)
    gx = (gray[..., :, 1:] - gray[..., :, :-1]).abs()
    gy = (gray[..., 1:, :] - gray[..., :-1, :]).abs()
    gx = gx / (gx.mean(dim=dims, keepdim=True) + _EPS)  # per image (official: over the batch)
    gy = gy / (gy.mean(dim=dims, keepdim=True) + _EPS)
    s = sdiag.view(1, -1, 1, 1)
    g_h = (probs[..., :, 1:] * (s * probs[..., :, :-1])).sum(dim=1, keepdim=True)
    g_v = (probs[..., 1:, :] * (s * probs[..., :-1, :])).sum(dim=1, keepdim=True)
    w_h = (torch.exp(-edge * gx) * (1.0 + g_h.clamp(0.0, 1.0))).clamp(0.0, 1.0)
    w_v = (torch.exp(-edge * gy) * (1.0 + g_v.clamp(0.0, 1.0))).clamp(0.0, 1.0)
    return w_h, w_v


def _laplacian(x: torch.Tensor, w_h: torch.Tensor, w_v: torch.Tensor) -> torch.Tensor:
    """L x on the 4-connected pixel graph with link weights w_h, w_v (prop.py:98-110)."""
    dh = w_h * (x[..., :, 1:] - x[..., :, :-1])
    dv = w_v * (x[..., 1:, :] - x[..., :-1, :])
    return F.pad(dh, (1, 0)) - F.pad(dh, (0, 1)) + F.pad(dv, (0, 0, 1, 0)) - F.pad(dv, (0, 0, 0, 1))


def _conjugate_gradient(apply: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, x0: torch.Tensor,
                        iters: int) -> torch.Tensor:
    """``iters`` plain CG steps for apply(x) = b from x0, inner products per image over everything
    (prop.py:112-128, with its 1e-12 guards)."""
    dims = (1, 2, 3)
    x = x0
    r = b - apply(x)
    p = r
    rs = (r * r).sum(dim=dims, keepdim=True)
    for _ in range(iters):
        ap = apply(p)
        alpha = rs / ((p * ap).sum(dim=dims, keepdim=True) + 1e-12)
        x = x + alpha * p
        r = r - alpha * ap
        rs_new = (r * r).sum(dim=dims, keepdim=True)
        p = r + (rs_new / (rs + 1e-12)) * p
        rs = rs_new
    return x


def laplacian_propagation(image: torch.Tensor, logits: torch.Tensor, text: torch.Tensor, grid: float = 80,
                          temperature: float = 0.5, diag_boost: float = 10.0, edge: float = 5.0,
                          cg_iters: int = 25, smoothness: float = 1.0) -> torch.Tensor:
    """PEARL's TLP (pearl/prop.py:130-176): per-text logits [B, C, H, W] refined on an edge-aware graph of
    ``image`` [B, 3, H, W] (normalised RGB, the logits' size) pooled to about ``grid`` cells a side, with the
    text embeddings [C, D] weighting the data term; returned at [B, C, H, W] in the logits' dtype."""
    if image.shape[-2:] != logits.shape[-2:]:
        raise ValueError(f"the guide {tuple(image.shape[-2:])} and the logits {tuple(logits.shape[-2:])} "
                         "must have one size")
    if text.shape[0] != logits.shape[1]:
        raise ValueError(f"{text.shape[0]} text embeddings for {logits.shape[1]} logit channels")
    h, w = logits.shape[-2:]
    with torch.autocast(device_type=logits.device.type, enabled=False):
        img, log = _wide(image), _wide(logits)
        sdiag = _diagonal_similarity(text.to(log.dtype), temperature, diag_boost)
        sh, sw = _scale_of(h, grid), _scale_of(w, grid)
        pooled = sh > 1 or sw > 1
        if pooled:  # prop.py:16-23, 145-148
            img = F.avg_pool2d(img, (sh, sw), (sh, sw), ceil_mode=False, count_include_pad=False)
            log = F.avg_pool2d(log, (sh, sw), (sh, sw), ceil_mode=False, count_include_pad=False)
        probs = log.softmax(dim=1)
        conf = probs.amax(dim=1, keepdim=True)
        agree = (probs * (sdiag.view(1, -1, 1, 1) * probs)).sum(dim=1, keepdim=True).clamp(0.0, 1.0)
        weight = conf.clamp_min(0.05) ** 2 * (1.0 + agree)  # prop.py:155-158
        gray = (0.299 * img[:, 0:1] + 0.587 * img[:, 1:2] + 0.114 * img[:, 2:3]) if img.shape[1] == 3 \
            else img[:, :1]  # prop.py:8-12
        w_h, w_v = _edge_weights(gray, probs, sdiag, edge)

        def apply(x: torch.Tensor) -> torch.Tensor:
            return weight * x + smoothness * _laplacian(x, w_h, w_v)

        out = _conjugate_gradient(apply, weight * log, log, cg_iters)
        if pooled:
            out = F.interpolate(out, size=(h, w), mode="bilinear", align_corners=False)
    return out.to(logits.dtype)


# ------------------------------------------------------------------------------------------------- method


def _check(options: dict[str, Any]) -> None:
    def number(key: str, low: float | None = None, strict: bool = False) -> None:
        value = options[key]
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
        if not ok or (low is not None and (value <= low if strict else value < low)):
            bound = "" if low is None else f" {'>' if strict else '>='} {low}"
            raise ValueError(f"PEARL option {key} must be a number{bound}, got {value!r}")

    def count(key: str) -> None:
        value = options[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"PEARL option {key} must be a whole number >= 0, got {value!r}")

    for key, allowed in (("attention", ATTENTIONS), ("align_solver", SOLVERS)):
        if options[key] not in allowed:
            raise ValueError(f"PEARL option {key} must be one of {', '.join(allowed)}, got {options[key]!r}")
    if not isinstance(options["propagation"], bool):
        raise ValueError(f"PEARL option propagation must be true or false, got {options['propagation']!r}")
    number("alpha_kk")
    for key in ("newton_schulz_steps", "tlp_cg_iters"):
        count(key)
    for key in ("tlp_grid", "tlp_temperature"):
        number(key, 0.0, True)
    for key in ("tlp_diag_boost", "tlp_edge", "tlp_smoothness"):
        number(key, 0.0)


class PEARL(TrainingFreeMethod):
    defaults: ClassVar[dict[str, Any]] = {
        "attention": "pearl",  # pearl | vanilla (pearl_ovss.py:21 attn_strategy; eval.py:16 --attn)
        "alpha_kk": 0.08,  # weight of the centred k-k logits (pearl_ovss.py:23; attn.py:29); 0 = use_kk off
        "newton_schulz_steps": 5,  # pearl_ovss.py:23 polar_iters=5
        "align_solver": "polar",  # polar | svd (pearl_ovss.py:23; attn.py:52-61)
        "propagation": True,  # TLP (pearl_ovss.py:24 use_prop="on"; run.sh:4 and README turn it on)
        "tlp_grid": 80,  # cells a side after pooling (pearl_ovss.py:24 grid=80; prop.py:32)
        "tlp_temperature": 0.5,  # text-similarity softmax temperature (prop.py:36 _tau_S)
        "tlp_diag_boost": 10.0,  # prop.py:37 _diag_boost
        "tlp_edge": 5.0,  # image-gradient sharpness (prop.py:38 _ke_img)
        "tlp_cg_iters": 25,  # conjugate-gradient steps (prop.py:39 _cg_iters)
        "tlp_smoothness": 1.0,  # weight of the Laplacian (prop.py:163 tau)
    }

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        _check(self.options)

    def logits(self, clip: ClipBackbone, trunk: Trunk, image: torch.Tensor, text: torch.Tensor,
               size: tuple[int, int]) -> torch.Tensor:
        visual = clip.model.visual
        block = list(visual.transformer.resblocks)[-1]
        tokens = visual.ln_post(_last_block(block, trunk.x, self.options))
        return zero_shot_logits(clip.project(tokens[:, 1:]), trunk.grid, text, size)

    def refine(self, guide: torch.Tensor, logits: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """TLP on the merged logits at the original size, guided by the resized input brought back to it
        (pearl_ovss.py:175-179)."""
        if not self.options["propagation"]:
            return logits
        o = self.options
        return laplacian_propagation(guide, logits, text, o["tlp_grid"], o["tlp_temperature"],
                                     o["tlp_diag_boost"], o["tlp_edge"], o["tlp_cg_iters"],
                                     o["tlp_smoothness"])
