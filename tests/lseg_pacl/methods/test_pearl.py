"""PEARL (lseg_pacl/methods/pearl.py) against a direct transcription of the official code,
PGSmall/PEARL@c26062b: the last block (clip/model.py:100-138, 220-301; pearl/attn.py:5-78), the window's
cosines (pearl_ovss.py:75-101) and TLP (pearl/prop.py:1-176, applied as pearl_ovss.py:175-179), in float64
with random perturbed CLIP weights on a non-square 40x56 window (5x7 patches).

The transcription keeps the official lines; only ``.float()`` reads "at least float32" (``_f32``), so that
float64 stays float64, and TLP's private constants (prop.py:35-39, 163) are constructor arguments so that each
option can be checked against them.
"""

import json
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from support import official
from support.models import perturbed_tiny_clip

from lseg_pacl.config.loading import eval_for, load_config
from lseg_pacl.errors import ConfigError
from lseg_pacl.methods import build_method
from lseg_pacl.methods.pearl import PEARL, laplacian_propagation, procrustes_rotation
from lseg_pacl.models.clip import ClipBackbone

REPO = "PGSmall/PEARL@c26062b"


def _f32(x):
    return x.to(torch.promote_types(x.dtype, torch.float32))


# ------------------------------------------------------------------- transcription: pearl/attn.py:5-78


def _polar_unitary_newton_schulz(M, iters=5, eps=1e-6):
    """attn.py:5-19."""
    B, d, _ = M.shape
    I = torch.eye(d, device=M.device, dtype=M.dtype).unsqueeze(0).expand(B, -1, -1)  # noqa: E741
    A = M.transpose(1, 2) @ M
    Anorm = A.detach().reshape(B, -1).norm(dim=1).clamp_min(eps).view(B, 1, 1)
    A_tilde = (A / Anorm) + eps * I
    Y = A_tilde
    Z = I.clone()
    for _ in range(iters):
        T = 0.5 * (3.0 * I - Z @ Y)
        Y = Y @ T
        Z = T @ Z
    inv_sqrt_A = Z / torch.sqrt(Anorm)
    R = M @ inv_sqrt_A
    return R


def pa_attn(q, k, v, detach_cls=True, *, use_kk=True, alpha_kk=0.08, align_solver="polar", polar_iters=5):
    """attn.py:22-78 (return_attn=False, with_attn=False)."""
    dtype_out = q.dtype
    q32 = _f32(q)
    k32 = _f32(k)
    v32 = _f32(v)
    BHT, T, d = q32.shape
    scale = d**-0.5
    w = q32.norm(dim=2, keepdim=True)
    if detach_cls and T > 0:
        w[:, 0:1, :] = 0.0
    w = w / (w.sum(dim=1, keepdim=True) + 1e-6)
    q_mu = (w * q32).sum(dim=1, keepdim=True)
    k_mu = (w * k32).sum(dim=1, keepdim=True)
    q_c = q32 - q_mu
    k_c = k32 - k_mu
    M = torch.bmm(k_c.transpose(1, 2), q_c)
    if align_solver == "polar":
        R = _polar_unitary_newton_schulz(M, iters=polar_iters, eps=1e-6)
    elif align_solver == "svd":
        U, _, Vh = torch.linalg.svd(M, full_matrices=False)
        R = torch.bmm(U, Vh)
    else:
        raise ValueError(f"Unknown align_solver: {align_solver}")
    k_aligned = torch.bmm(k32, R)
    logits_pa = torch.bmm(q32 * scale, k_aligned.transpose(1, 2))
    if use_kk:
        logits_kk = torch.bmm(k_c, k_c.transpose(1, 2)) * scale
        logits_pa = logits_pa + alpha_kk * logits_kk
    attn = F.softmax(logits_pa, dim=-1)
    out = torch.bmm(attn, v32)
    return out.to(dtype_out)


# ------------------------------------------------------------ transcription: clip/model.py, pearl_ovss.py


def custom_attn(attn_layer, x, n_patches, attn_strategy, use_kk, alpha_kk, align_solver, polar_iters):
    """clip/model.py:220-301 (return_attn=False, with_attn=False); x is LND."""
    num_heads = attn_layer.num_heads
    num_tokens, bsz, embed_dim = x.size()
    head_dim = embed_dim // num_heads
    scale = head_dim**-0.5
    q, k, v = F.linear(x, attn_layer.in_proj_weight, attn_layer.in_proj_bias).chunk(3, dim=-1)
    q = q.contiguous().view(-1, bsz * num_heads, head_dim).transpose(0, 1)
    k = k.contiguous().view(-1, bsz * num_heads, head_dim).transpose(0, 1)
    v = v.contiguous().view(-1, bsz * num_heads, head_dim).transpose(0, 1)
    if attn_strategy == "pearl":  # :236-275
        attn_output = pa_attn(q.contiguous(), k.contiguous(), v.contiguous(), detach_cls=True, use_kk=use_kk,
                              alpha_kk=alpha_kk, align_solver=align_solver, polar_iters=polar_iters)
        attn_output = attn_output.transpose(0, 1).contiguous().view(-1, bsz, embed_dim)
        return attn_layer.out_proj(attn_output)
    attn_weights = torch.bmm(q * scale, k.transpose(1, 2))  # :281-298 vanilla
    attn_weights = F.softmax(attn_weights, dim=-1)
    attn_output = torch.bmm(attn_weights, v)
    attn_output = attn_output.transpose(0, 1).contiguous().view(-1, bsz, embed_dim)
    return attn_layer.out_proj(attn_output)


def encode_image(model, x, attn):
    """VisionTransformer.forward(return_all=True) with arch 'reduced' (clip/model.py:100-138); positions by
    clip/model.py:140-157, the same lines as NACLIP's :134-151 (tests/support/official.py)."""
    visual = model.visual
    B, nc, w, h = x.shape
    patch = visual.conv1.kernel_size[0]
    n_patches = (w // patch, h // patch)
    x = visual.conv1(x)
    x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
    cls = visual.class_embedding.to(x.dtype) + torch.zeros(x.shape[0], 1, x.shape[-1], dtype=x.dtype)
    x = torch.cat([cls, x], dim=1)
    pos = official.interpolate_pos_encoding(visual.positional_embedding, x.shape[1], w, h, patch)
    x = x + pos.to(x.dtype)
    x = visual.ln_pre(x)
    batch_first = getattr(visual.transformer, "batch_first", True)
    x = x.permute(1, 0, 2)  # NLD -> LND
    blocks = list(visual.transformer.resblocks)
    for blk in blocks[:-1]:
        x = blk(x.permute(1, 0, 2)).permute(1, 0, 2) if batch_first else blk(x)
    blk = blocks[-1]
    x = custom_attn(blk.attn, blk.ln_1(x), n_patches, **attn)  # :124-125 arch 'reduced'
    x = x.permute(1, 0, 2)
    return visual.ln_post(x) @ visual.proj


def forward_feature(model, img, query_features, attn):
    """pearl_ovss.py:75-101."""
    B, _, H, W = img.shape
    tokens_all = encode_image(model, img, attn)
    patch_tokens = tokens_all[:, 1:, :]
    patch_tokens = F.normalize(patch_tokens, dim=-1)
    text = F.normalize(query_features, dim=-1)
    C = text.size(0)
    text_b = text.unsqueeze(0).expand(B, -1, -1)
    logits_patch = torch.bmm(patch_tokens, text_b.transpose(1, 2))
    patch_size = model.visual.conv1.kernel_size[0]
    h, w = H // patch_size, W // patch_size
    logits_map = logits_patch.permute(0, 2, 1).reshape(B, C, h, w)
    return F.interpolate(logits_map, size=(H, W), mode="bilinear", align_corners=False)


# ------------------------------------------------------------------- transcription: pearl/prop.py:1-176


def _to_gray(image):
    """prop.py:7-12."""
    if image.size(1) == 3:
        r, g, b = image[:, 0:1], image[:, 1:2], image[:, 2:3]
        return 0.299 * r + 0.587 * g + 0.114 * b
    return image[:, :1]


def _downsample_hw(x, sh, sw):
    """prop.py:15-23."""
    sh = max(1, int(sh))
    sw = max(1, int(sw))
    if sh == 1 and sw == 1:
        return x
    return F.avg_pool2d(x, kernel_size=(sh, sw), stride=(sh, sw), ceil_mode=False, count_include_pad=False)


class TLP(nn.Module):
    """prop.py:31-176; the constants of :35-39 and :163 as arguments (defaults = the official values)."""

    def __init__(self, grid=80, eps=1e-6, tau_S=0.5, diag_boost=10.0, ke_img=5.0, cg_iters=25, tau=1):
        super().__init__()
        self.eps = float(eps)
        self._target_grid = grid
        self._tau_S = tau_S
        self._diag_boost = diag_boost
        self._ke_img = ke_img
        self._cg_iters = cg_iters
        self._tau = tau
        self._S = None

    def bind_text(self, text_features):
        T = F.normalize(text_features, dim=-1)
        S = T @ T.t()
        S = torch.softmax(S / max(self._tau_S, self.eps), dim=1)
        if self._diag_boost > 0:
            C = S.size(0)
            S = S + self._diag_boost * torch.eye(C, device=S.device, dtype=S.dtype)
            S = S / (S.sum(dim=1, keepdim=True) + self.eps)
        self._S = S

    def _auto_scale(self, H, W):
        sh = int(max(1, round(H / float(self._target_grid))))
        sw = int(max(1, round(W / float(self._target_grid))))
        return sh, sw

    def _semantic_agree(self, probs, S):
        Sp = torch.einsum("cc,bcij->bcij", S, probs)  # prop.py:63: only the diagonal of S
        agree = (probs * Sp).sum(dim=1, keepdim=True)
        return agree.clamp(0.0, 1.0)

    def _edge_weights(self, gray, probs, S):
        gx = torch.abs(gray[:, :, :, 1:] - gray[:, :, :, :-1])
        gy = torch.abs(gray[:, :, 1:, :] - gray[:, :, :-1, :])
        gx = gx / (gx.mean() + self.eps)
        gy = gy / (gy.mean() + self.eps)
        w_h_img = torch.exp(-self._ke_img * gx)
        w_v_img = torch.exp(-self._ke_img * gy)
        p_cur = probs[:, :, :, 1:]
        p_prev = probs[:, :, :, :-1]
        Sp_prev = torch.einsum("cc,bcij->bcij", S, p_prev)
        g_h = (p_cur * Sp_prev).sum(dim=1, keepdim=True)
        p_cur = probs[:, :, 1:, :]
        p_prev = probs[:, :, :-1, :]
        Sp_prev = torch.einsum("cc,bcij->bcij", S, p_prev)
        g_v = (p_cur * Sp_prev).sum(dim=1, keepdim=True)
        gain_h = 1.0 + g_h.clamp(0.0, 1.0)
        gain_v = 1.0 + g_v.clamp(0.0, 1.0)
        w_h = (w_h_img * gain_h).clamp_(0.0, 1.0)
        w_v = (w_v_img * gain_v).clamp_(0.0, 1.0)
        w_h = torch.cat([torch.ones_like(w_h[:, :, :, :1]), w_h], dim=3)
        w_v = torch.cat([torch.ones_like(w_v[:, :, :1, :]), w_v], dim=2)
        return w_h, w_v

    def _apply_laplacian(self, F, w_h, w_v):  # noqa: N803 (the official name)
        diff_h = F[:, :, :, 1:] - F[:, :, :, :-1]
        wh = w_h[:, :, :, 1:]
        out = torch.zeros_like(F)
        out[:, :, :, 1:] += wh * diff_h
        out[:, :, :, :-1] -= wh * diff_h
        diff_v = F[:, :, 1:, :] - F[:, :, :-1, :]
        wv = w_v[:, :, 1:, :]
        out[:, :, 1:, :] += wv * diff_v
        out[:, :, :-1, :] -= wv * diff_v
        return out

    def _cg_solve(self, A_apply, B_init, X0=None, iters=25):  # noqa: N803
        X = B_init.clone() if X0 is None else X0.clone()
        R = B_init - A_apply(X)
        P = R.clone()
        rsold = (R * R).sum(dim=(1, 2, 3), keepdim=True)
        for _ in range(iters):
            AP = A_apply(P)
            denom = (P * AP).sum(dim=(1, 2, 3), keepdim=True) + 1e-12
            alpha = rsold / denom
            X = X + alpha * P
            R = R - alpha * AP
            rsnew = (R * R).sum(dim=(1, 2, 3), keepdim=True)
            beta = rsnew / (rsold + 1e-12)
            P = R + beta * P
            rsold = rsnew
        return X

    def forward(self, image, logits):
        B, C, H, W = logits.shape
        dtype_out = logits.dtype
        S = self._S.to(logits.device).to(logits.dtype)
        sh, sw = self._auto_scale(H, W)
        if sh > 1 or sw > 1:
            img_s = _downsample_hw(_f32(image), sh, sw)
            log_s = _downsample_hw(_f32(logits), sh, sw)
        else:
            img_s = _f32(image)
            log_s = _f32(logits)
        probs = torch.softmax(log_s, dim=1)
        conf = probs.max(dim=1, keepdim=True)[0]
        agree = self._semantic_agree(probs, S)
        Cw = (conf.clamp_min(0.05) ** 2) * (1.0 + agree)
        gray = _to_gray(img_s)
        w_h, w_v = self._edge_weights(gray, probs, S)
        tau = self._tau

        def A_apply(X):  # noqa: N802
            return Cw * X + tau * self._apply_laplacian(X, w_h, w_v)

        B_term = Cw * log_s
        F_sol = self._cg_solve(A_apply, B_term, X0=log_s, iters=self._cg_iters)
        if sh > 1 or sw > 1:
            F_sol = F.interpolate(F_sol, size=(H, W), mode="bilinear", align_corners=False).to(dtype_out)
        else:
            F_sol = F_sol.to(dtype_out)
        return F_sol


def official_logits(model, img, text, attn=None, prop=None, guide=None):
    """pearl_ovss.py:165-179 on one window taken as the whole image at its original size (the bilinear resize
    to ori_shape is then the identity): cosines, then TLP when ``prop`` (TLP arguments) is given."""
    attn = {"attn_strategy": "pearl", "use_kk": True, "alpha_kk": 0.08, "align_solver": "polar",
            "polar_iters": 5, **(attn or {})}
    seg_logits = forward_feature(model, img, text, attn)
    if prop is None:
        return seg_logits
    tlp = TLP(**prop)
    tlp.bind_text(text)  # pearl_ovss.py:68-69
    return tlp(img if guide is None else guide, seg_logits.to(img.dtype))


# ------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def clip():
    model = perturbed_tiny_clip()
    return model


@pytest.fixture(scope="module")
def window():
    g = torch.Generator().manual_seed(2)
    image = torch.randn(1, 3, 40, 56, generator=g, dtype=torch.float64)
    text = F.normalize(torch.randn(6, 128, generator=g, dtype=torch.float64), dim=-1)
    return image, text


def ours(clip, image, text, options=None, size=None, guide=None):
    """The window's cosines (``logits``), then the image-level step (``refine``) the evaluator runs on the
    merged logits at the original size, with the input brought to that size as its guide."""
    size = size or tuple(image.shape[-2:])
    method = build_method("pearl", options)
    with torch.no_grad():
        cosines = method.logits(clip, clip.trunk(image), image, text, size)
        guide = guide if guide is not None else F.interpolate(image, size=size, mode="bilinear",
                                                               align_corners=False)
        return method.refine(guide, cosines, text)


def close(a, b):
    assert a.dtype == b.dtype == torch.float64
    assert a.shape == b.shape
    assert torch.allclose(a, b, atol=1e-10, rtol=0), (a - b).abs().max().item()


# ------------------------------------------------------------------------------------------------- tests


def test_a_window_equals_the_official_code(clip, window):
    """Defaults: PA attention (alpha_kk 0.08, 5 Newton-Schulz steps) and TLP (grid 80) on a 40x56 window."""
    image, text = window
    with torch.no_grad():
        expected = official_logits(clip.model, image, text, prop={})
        plain = official_logits(clip.model, image, text)
    got = ours(clip, image, text)
    close(got, expected)
    assert (expected - plain).abs().max() > 1e-3  # TLP changed the logits
    assert expected.argmax(1).unique().numel() > 1  # a non-trivial map


# option -> (the official settings it stands for: attention kwargs, TLP kwargs or None for TLP off)
OPTIONS = {
    "attention=vanilla": ({"attention": "vanilla"}, {"attn_strategy": "vanilla"}, {}),  # eval.py:16 --attn
    "alpha_kk=0.3": ({"alpha_kk": 0.3}, {"alpha_kk": 0.3}, {}),  # configs/cfg_ade20k.py:6
    "alpha_kk=0 is use_kk off": ({"alpha_kk": 0.0}, {"use_kk": False}, {}),  # attn.py:66
    "newton_schulz_steps=2": ({"newton_schulz_steps": 2}, {"polar_iters": 2}, {}),  # attn.py:13
    "align_solver=svd": ({"align_solver": "svd"}, {"align_solver": "svd"}, {}),  # attn.py:54-56
    "propagation=false": ({"propagation": False}, {}, None),  # eval.py:17 --prop off
    "tlp_grid=16 (round 2.5 -> 2)": ({"tlp_grid": 16}, {}, {"grid": 16}),  # prop.py:53-57
    "tlp_grid=224": ({"tlp_grid": 224}, {}, {"grid": 224}),  # configs/cfg_city_scapes.py:7
    "tlp_temperature=0.1": ({"tlp_temperature": 0.1}, {}, {"tau_S": 0.1}),  # prop.py:36
    "tlp_diag_boost=0": ({"tlp_diag_boost": 0.0}, {}, {"diag_boost": 0.0}),  # prop.py:37, 47
    "tlp_edge=1": ({"tlp_edge": 1.0}, {}, {"ke_img": 1.0}),  # prop.py:38
    "tlp_cg_iters=3": ({"tlp_cg_iters": 3}, {}, {"cg_iters": 3}),  # prop.py:39
    "tlp_smoothness=4": ({"tlp_smoothness": 4.0}, {}, {"tau": 4.0}),  # prop.py:163
}


@pytest.mark.parametrize("case", list(OPTIONS))
def test_each_option_equals_the_official_switch_and_matters(clip, window, case):
    options, attn, prop = OPTIONS[case]
    image, text = window
    with torch.no_grad():
        expected = official_logits(clip.model, image, text, attn, prop)
    got = ours(clip, image, text, options)
    close(got, expected)
    if case != "tlp_grid=224":  # 224 > 80 pools nothing on a 40x56 window either: the same map
        assert (got - ours(clip, image, text)).abs().max() > 1e-6, "the option changed nothing"


def test_five_newton_schulz_steps_are_the_official_ones_not_the_exact_polar_factor():
    g = torch.Generator().manual_seed(3)
    m = torch.randn(8, 32, 32, generator=g, dtype=torch.float64)
    five = procrustes_rotation(m, 5)
    assert torch.allclose(five, _polar_unitary_newton_schulz(m, 5), atol=1e-12, rtol=0)
    exact = procrustes_rotation(m, solver="svd")
    eye = torch.eye(32, dtype=torch.float64)
    assert torch.allclose(exact.transpose(-2, -1) @ exact, eye.expand_as(exact), atol=1e-10)
    assert (five - exact).norm() / exact.norm() > 0.05  # not converged: the official numbers, not the SVD's


def test_windows_in_a_batch_are_independent(clip, window):
    """The edge normalisation is per image (the official one spans the batch, which is 1 there)."""
    image, text = window
    other = torch.flip(image, dims=(-1,)) * 1.7
    both = ours(clip, torch.cat([image, other]), text)
    close(both[:1], ours(clip, image, text))
    close(both[1:], ours(clip, other, text))


def test_a_window_stretched_over_a_remainder(clip, window):
    """remainder=drop: the whole patches (40x56) stretched over a 44x60 window. The cosines equal the official
    ones on the 44x60 input (its patch convolution drops the remainder); TLP's guide is the full input, as
    the evaluator passes it and as pearl_ovss.py:178 does."""
    image, text = window
    g = torch.Generator().manual_seed(4)
    full = torch.randn(1, 3, 44, 60, generator=g, dtype=torch.float64)
    full[..., :40, :56] = image
    with torch.no_grad():
        cosines = official_logits(clip.model, full, text)
        tlp = TLP()
        tlp.bind_text(text)
        expected = tlp(full, cosines)
    close(ours(clip, image, text, {"propagation": False}, (44, 60), guide=full), cosines)
    close(ours(clip, image, text, size=(44, 60), guide=full), expected)


def test_propagation_checks_its_inputs():
    logits = torch.zeros(1, 3, 8, 8)
    with pytest.raises(ValueError, match="one size"):
        laplacian_propagation(torch.zeros(1, 3, 8, 9), logits, torch.randn(3, 4))
    with pytest.raises(ValueError, match="2 text embeddings for 3"):
        laplacian_propagation(torch.zeros(1, 3, 8, 8), logits, torch.randn(2, 4))


def test_reduced_precision_keeps_the_alignment_in_float32(monkeypatch):
    """Under autocast (the protocol's fp16 on CUDA; bf16 here on the CPU) q, k, v come out of the block in
    half precision; the Procrustes fit and TLP's solve run in float32 (as attn.py:36 and prop.py:146-151
    upcast), not in the half precision that would wreck the Newton-Schulz iteration."""
    from lseg_pacl.methods import pearl

    seen = []

    def spy(fn, index):
        def wrapped(*args, **kwargs):
            seen.append((fn.__name__, args[index].dtype, torch.is_autocast_enabled("cpu")))
            return fn(*args, **kwargs)
        return wrapped

    monkeypatch.setattr(pearl, "procrustes_rotation", spy(pearl.procrustes_rotation, 0))
    monkeypatch.setattr(pearl, "_conjugate_gradient", spy(pearl._conjugate_gradient, 1))
    torch.manual_seed(0)
    clip = ClipBackbone("lseg-tiny-vit", None, pos_embed="lineage").eval()
    image = torch.randn(1, 3, 40, 56)
    text = F.normalize(torch.randn(6, 128), dim=-1)
    reference = ours(clip, image, text)
    seen.clear()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        low = ours(clip, image, text)
    expected = [("procrustes_rotation", torch.float32, False), ("_conjugate_gradient", torch.float32, False)]
    assert seen == expected
    assert low.dtype == torch.float32 and torch.isfinite(low).all()
    assert (low - reference).abs().max() < 0.01


@pytest.mark.parametrize("bad", [
    {"alpha": 0.1},  # unknown
    {"attention": "qq"},
    {"align_solver": "qr"},
    {"newton_schulz_steps": -1},
    {"newton_schulz_steps": 2.5},
    {"propagation": "on"},
    {"alpha_kk": "0.3"},
    {"tlp_grid": 0},
    {"tlp_temperature": 0.0},
    {"tlp_cg_iters": True},
    {"tlp_edge": -1.0},
    {"tlp_diag_boost": None},
    {"tlp_smoothness": -0.5},
])
def test_options_are_validated(bad):
    with pytest.raises(ValueError, match="PEARL"):
        PEARL(bad)


def test_a_bad_option_in_a_config_is_refused_with_its_place():
    with pytest.raises(ConfigError, match="method_options: .*align_solver"):
        load_config("baseline_pearl", ["eval.method_options.align_solver=qr"])
    with pytest.raises(ConfigError, match="per_benchmark.ade20k.method_options: .*no option"):
        load_config("baseline_pearl", ["eval.per_benchmark.ade20k.method_options.alpha=0.3"])


# ---------------------------------------------------------------------------------------------- the preset

EIGHT = ("voc21", "context60", "coco_object", "voc20", "context59", "coco_stuff171", "cityscapes", "ade20k")


def paper(bench):
    """Each benchmark's official values (configs/cfg_*.py over pearl_ovss.py:20-25, run.sh:4 TLP on)."""
    where = f"{REPO} pearl_ovss.py:20-25, run.sh:4, configs/cfg_{bench}.py"
    row = dict(names="sclip", mode="slide", short_side=336, crop=224, stride=112, logit_scale=40,
               bg_threshold=0.0, bg_area=None, pamr_iterations=0,
               method_options=dict(attention="pearl", alpha_kk=0.08, newton_schulz_steps=5,
                                   align_solver="polar", propagation=True, tlp_grid=80, tlp_temperature=0.5,
                                   tlp_diag_boost=10.0, tlp_edge=5.0, tlp_cg_iters=25, tlp_smoothness=1.0))
    if bench in ("voc21", "voc20"):
        row["mode"] = "whole"  # cfg_voc21.py:7, cfg_voc20.py:6 slide_crop=0
    if bench in ("voc21", "context60", "coco_object"):
        row["bg_threshold"] = 0.1  # cfg_voc21.py:6, cfg_context60.py:6, cfg_coco_object.py:6 prob_thd=0.1
    if bench == "cityscapes":
        row["short_side"] = 560  # cfg_city_scapes.py:16
        row["method_options"].update(alpha_kk=0.3, tlp_grid=224)  # cfg_city_scapes.py:6-7
    if bench == "ade20k":
        row["method_options"]["alpha_kk"] = 0.3  # cfg_ade20k.py:6
    return row, where


def test_the_paper_preset_holds_the_official_values():
    cfg = load_config("baseline_pearl", ["eval.preset=paper"])
    assert cfg.model.clip.pos_embed == "lineage"  # clip/model.py:110-113, 140-157
    assert cfg.model.clip.last_block == "pearl" and cfg.eval.method == "PEARL"
    for bench in EIGHT:
        e = eval_for(cfg.eval, bench)
        expected, where = paper(bench)
        got = {k: e[k] for k in expected}
        got["method_options"] = dict(got["method_options"])
        assert got == expected, where
        shared = (e.templates, e.background, e.resize_backend, e.remainder, e.precision, list(e.scales),
                  e.flip)
        assert shared == ("imagenet80", "softmax", "cv2", "drop", "fp16", [1.0], False), where
        assert PEARL(e.method_options).options == expected["method_options"]


# ---------------------------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_eval_runs_end_to_end(world, tiny_clip_file, tmp_path):
    from lseg_pacl.commands.cli import main

    args = ["eval", "baseline_pearl", "benchmarks=[synthetic]", f"data.val.roots.synthetic={world}",
            "model.clip.name=lseg-tiny-vit", f"model.clip.pretrained={tiny_clip_file}", "eval.short_side=48",
            "eval.crop=32", "eval.stride=16", "eval.max_images=2", "eval.pictures=0", "data.num_workers=0",
            "logger.wandb.mode=disabled", f"run.root={tmp_path}", "eval.method_options.alpha_kk=0.3",
            "eval.method_options.tlp_cg_iters=10"]
    assert main(args) == 0
    (results,) = (tmp_path / "baseline_pearl").glob("eval-*/results.json")
    synthetic = json.loads(results.read_text())["synthetic"]
    assert isinstance(synthetic["mIoU"], float) and math.isfinite(synthetic["mIoU"])
    assert synthetic["images"] == 2
    assert "pearl" in synthetic["settings"]["model"] and synthetic["settings"]["method"] == "PEARL"
    assert synthetic["settings"]["method_options"]["alpha_kk"] == 0.3
    assert synthetic["settings"]["method_options"]["tlp_cg_iters"] == 10
