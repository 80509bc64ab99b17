"""ProxyCLIP against a direct transcription of the official code (mc-lan/ProxyCLIP@e7b767f, and DINO's hub
model facebookresearch/dino@7c446df), in float64, with random perturbed weights (CLIP and a DINO-layout timm
ViT), on non-square windows; the options, the VFM's weights, the `paper` preset and one `eval` run end to end.

The official code fails on non-square windows (it reads both VFM grid sides from the height, segmentor :149,
and swaps CLIP's grid sides, transformer.py:521): the transcription below takes (rows, cols), the one change
made to it, marked where it is made.
"""

from __future__ import annotations

import hashlib
import json
import math
from functools import partial

import pytest
import torch
import torch.nn.functional as F
from support import official
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from lseg_pacl.config.loading import eval_for, load_config
from lseg_pacl.errors import ConfigError, MissingInputError
from lseg_pacl.methods import build_method
from lseg_pacl.methods.proxyclip import (
    VFM_KEY,
    ProxyCLIP,
    build_vfm,
    centred_padding,
    vfm_features,
    vfm_input,
    vfm_model,
)
from lseg_pacl.models.clip import ClipBackbone
from lseg_pacl.models.trunk import NOTHING

MEAN = (0.48145466, 0.4578275, 0.40821073)  # myutils.py UnNormalize at proxyclip_segmentor.py:79
STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))  # proxyclip_segmentor.py:80
TINY = {"vfm_weights": None}  # every test VFM is built here or randomly initialised


def perturb(module: nn.Module, seed: int) -> None:
    """Every parameter moved randomly (norms and biases too), so no identity or zero hides a mistake."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            scale = 0.3 if "proj" in name or p.ndim > 1 else 0.2
            noise = torch.randn(p.shape, generator=g, dtype=p.dtype) * scale
            p.copy_(p + noise + (0.1 if p.ndim == 1 else 0))


@pytest.fixture(scope="module")
def clip():
    torch.manual_seed(0)
    model = ClipBackbone("lseg-tiny-vit", None, pos_embed="lineage").double().eval()
    perturb(model.model.visual, 1)
    return model


def tiny_dino(seed: int = 3, **layout) -> VisionTransformer:
    """DINO's ViT layout (dino vision_transformer.py:136-165, vit_base: qkv bias, LayerNorm eps 1e-6) at toy
    size: trained on a 4 x 4 grid of 8-pixel patches."""
    torch.manual_seed(seed)
    args = dict(img_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=3, qkv_bias=True,
                norm_layer=partial(nn.LayerNorm, eps=1e-6), num_classes=0, dynamic_img_size=True)
    vfm = VisionTransformer(**{**args, **layout}).double().eval()
    perturb(vfm, seed + 1)
    return vfm


@pytest.fixture(scope="module")
def dino():
    return tiny_dino()


def window(seed: int, h: int = 40, w: int = 56, batch: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, h, w, generator=g, dtype=torch.float64)


@pytest.fixture(scope="module")
def texts():
    g = torch.Generator().manual_seed(4)
    return F.normalize(torch.randn(6, 128, generator=g, dtype=torch.float64), dim=-1)


# ---------------------------------------------------------------------------------------------- transcription
# DINO's hub model, facebookresearch/dino@7c446df vision_transformer.py


def dino_attention(attn, x):
    """Attention.forward :80-92 (qk_scale None: head_dim ** -0.5, :73)."""
    B, N, C = x.shape
    qkv = F.linear(x, attn.qkv.weight, attn.qkv.bias).reshape(B, N, 3, attn.num_heads, C // attn.num_heads)
    qkv = qkv.permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    a = (q @ k.transpose(-2, -1)) * (C // attn.num_heads) ** -0.5
    a = a.softmax(dim=-1)
    x = (a @ v).transpose(1, 2).reshape(B, N, C)
    return F.linear(x, attn.proj.weight, attn.proj.bias)


def dino_block(blk, x):
    """Block.forward :107-113 with Mlp.forward :59-65 (nn.GELU)."""
    x = x + dino_attention(blk.attn, blk.norm1(x))
    h = F.gelu(F.linear(blk.norm2(x), blk.mlp.fc1.weight, blk.mlp.fc1.bias))
    return x + F.linear(h, blk.mlp.fc2.weight, blk.mlp.fc2.bias)


def dino_interpolate_pos_encoding(pos_embed, patch_size, x, w, h):
    """VisionTransformer.interpolate_pos_encoding :174-194 (w: the input's height, h: its width)."""
    npatch = x.shape[1] - 1
    N = pos_embed.shape[1] - 1
    if npatch == N and w == h:
        return pos_embed
    class_pos_embed = pos_embed[:, 0]
    patch_pos_embed = pos_embed[:, 1:]
    dim = x.shape[-1]
    w0 = w // patch_size
    h0 = h // patch_size
    w0, h0 = w0 + 0.1, h0 + 0.1
    patch_pos_embed = F.interpolate(
        patch_pos_embed.reshape(1, int(math.sqrt(N)), int(math.sqrt(N)), dim).permute(0, 3, 1, 2),
        scale_factor=(w0 / math.sqrt(N), h0 / math.sqrt(N)),
        mode="bicubic",
    )
    assert int(w0) == patch_pos_embed.shape[-2] and int(h0) == patch_pos_embed.shape[-1]
    patch_pos_embed = patch_pos_embed.permute(0, 2, 3, 1).view(1, -1, dim)
    return torch.cat((class_pos_embed.unsqueeze(0), patch_pos_embed), dim=1)


def dino_get_intermediate_layers(vfm, x):
    """prepare_tokens :196-207 (PatchEmbed.forward :128-131), get_intermediate_layers :225-233 with n=1."""
    B, nc, w, h = x.shape
    t = vfm.patch_embed.proj(x).flatten(2).transpose(1, 2)
    t = torch.cat((vfm.cls_token.expand(B, -1, -1), t), dim=1)
    t = t + dino_interpolate_pos_encoding(vfm.pos_embed, vfm.patch_embed.patch_size[0], t, w, h)
    for blk in vfm.blocks:
        t = dino_block(blk, t)
    return [vfm.norm(t)]


# ProxyCLIP, mc-lan/ProxyCLIP@e7b767f: open_clip/transformer.py and proxyclip_segmentor.py


def custom_attn(attn_layer, x, ex_feats=None, beta=1.2, gamma=3.0, token_size=(16, 16)):
    """open_clip/transformer.py:560-587, line for line (x is LND)."""
    num_heads = attn_layer.num_heads
    _, bsz, embed_dim = x.size()
    head_dim = embed_dim // num_heads

    q, k, v = F.linear(x, attn_layer.in_proj_weight, attn_layer.in_proj_bias).chunk(3, dim=-1)
    v = v.contiguous().view(-1, bsz * num_heads, head_dim).transpose(0, 1)

    B, C, H, W = ex_feats.shape
    q_k = F.normalize(ex_feats.flatten(2, 3), dim=1)
    similarity = torch.einsum("b c m, b c n -> b m n", q_k, q_k)

    similarity = (similarity - torch.mean(similarity) * beta) * gamma
    similarity[similarity < 0.0] = float("-inf")

    mask = similarity.to(q.dtype).unsqueeze(1).repeat(1, num_heads, 1, 1)
    mask = mask.reshape(bsz * num_heads, mask.shape[2], mask.shape[3])
    attn_weights = F.softmax(mask, dim=-1)

    v = v[:, 1:, :].reshape(bsz * num_heads, token_size[0], token_size[1], head_dim).permute(0, 3, 1, 2)
    v = F.interpolate(v, size=(H, W), mode="bilinear", align_corners=False)
    v = v.permute(0, 2, 3, 1).reshape(bsz * num_heads, H * W, head_dim)

    attn_output = torch.bmm(attn_weights, v)
    attn_output = attn_output.transpose(0, 1).contiguous().view(-1, bsz, embed_dim)
    return attn_layer.out_proj(attn_output)


def visual_forward(visual, x, ex_feats, beta, gamma):
    """VisionTransformer.forward, open_clip/transformer.py:503-538; positions :513-516 with
    interpolate_pos_encoding :540-558 (the same code as SCLIP's, tests/support/official.py)."""
    B, nc, w, h = x.shape
    patch = visual.conv1.kernel_size[0]
    x = visual.conv1(x)
    x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
    cls = visual.class_embedding.to(x.dtype) + torch.zeros(x.shape[0], 1, x.shape[-1], dtype=x.dtype)
    x = torch.cat([cls, x], dim=1)
    pos = official.interpolate_pos_encoding(visual.positional_embedding, x.shape[1], w, h, patch)
    x = x + pos.to(x.dtype)
    x = visual.ln_pre(x)
    token_size = w // patch, h // patch  # CHANGED: :521 has (h // p, w // p), i.e. (cols, rows)
    batch_first = getattr(visual.transformer, "batch_first", True)  # the installed open_clip's layout
    x = x.permute(1, 0, 2)  # NLD -> LND
    blocks = list(visual.transformer.resblocks)
    for blk in blocks[:-1]:
        x = blk(x.permute(1, 0, 2)).permute(1, 0, 2) if batch_first else blk(x)
    blk = blocks[-1]
    x = custom_attn(blk.attn, blk.ln_1(x), ex_feats=ex_feats, beta=beta, gamma=gamma, token_size=token_size)
    x = x.permute(1, 0, 2)  # LND -> NLD
    x = visual.ln_post(x)
    return x @ visual.proj


def unnorm_norm(img):
    """proxyclip_segmentor.py:113-114: myutils.py:11-15 UnNormalize, then torchvision's Normalize."""
    out = []
    for i in range(len(img)):
        image2 = torch.clone(img[i])
        for t, m, s in zip(image2, MEAN, STD):  # noqa: B905
            t.mul_(s).add_(m)
        mean = torch.tensor(IMAGENET[0], dtype=img.dtype).view(-1, 1, 1)
        std = torch.tensor(IMAGENET[1], dtype=img.dtype).view(-1, 1, 1)
        out.append((image2 - mean) / std)
    return torch.stack(out, dim=0)


def forward_feature(clip, vfm, img, query_features, beta=1.2, gamma=3.0, ex_feats=None):
    """proxyclip_segmentor.py:106-186, the dino branch (:124-154), logit_size None. ``ex_feats`` given: the
    proxy of another VFM (the dinov2 branch :156-159 reads timm-equal features)."""
    imgs_norm = unnorm_norm(img)
    patch_size = vfm.patch_embed.patch_size[0]
    # CHANGED: :149 takes both from shape[-2]
    I, J = imgs_norm[0].shape[-2] // patch_size, imgs_norm[0].shape[-1] // patch_size  # noqa: E741
    if ex_feats is None:
        feat = dino_get_intermediate_layers(vfm, imgs_norm)[0]
        nb_im = feat.shape[0]
        ex_feats = feat[:, 1:, :].reshape(nb_im, I, J, -1).permute(0, 3, 1, 2)
    image_features = visual_forward(clip.model.visual, img, ex_feats, beta, gamma)
    image_features = image_features / image_features.norm(dim=-1, keepdim=True)
    logits = image_features @ query_features.T
    logits = logits.permute(0, 2, 1).reshape(-1, logits.shape[-1], I, J)
    return F.interpolate(logits, size=img.shape[-2:], mode="bilinear")


def compute_padsize(H, W, patch_size):
    """proxyclip_segmentor.py:294-306."""
    l, r, t, b = 0, 0, 0, 0  # noqa: E741
    if W % patch_size:
        lr = patch_size - (W % patch_size)
        l = lr // 2  # noqa: E741
        r = lr - l
    if H % patch_size:
        tb = patch_size - (H % patch_size)
        t = tb // 2
        b = tb - t
    return l, r, t, b


def official_window(clip, vfm, crop_img, query_features, beta=1.2, gamma=3.0):
    """One window of forward_slide, proxyclip_segmentor.py:218-231: zero padding to x56, cut back."""
    H, W = crop_img.shape[2:]
    pad = compute_padsize(H, W, 56)
    if any(pad):
        crop_img = F.pad(crop_img, pad)
    crop_seg_logit = forward_feature(clip, vfm, crop_img, query_features, beta, gamma)
    if any(pad):
        l, t = pad[0], pad[2]  # noqa: E741
        crop_seg_logit = crop_seg_logit[:, :, t : t + H, l : l + W]
    return crop_seg_logit


# ------------------------------------------------------------------------------------------------ fidelity


def ours(clip, method, image, texts, size=None):
    with torch.no_grad():
        return method.logits(clip, clip.trunk(image, method.needs()), image, texts, size or image.shape[-2:])


def agree(a, b):
    assert a.dtype == torch.float64 and a.shape == b.shape
    assert torch.isfinite(a).all()
    assert torch.allclose(a, b, atol=1e-10, rtol=0), (a - b).abs().max()


@pytest.mark.parametrize("h, w", [(40, 56), (56, 40), (32, 32)])
def test_a_window_equals_the_official_code(clip, dino, texts, h, w):
    """beta, gamma at their defaults, DINO's hub positions (the paper preset), pad_multiple 8 (no padding):
    5x7 and 7x5 patches (resampled positions) and the VFM's trained 4x4 grid."""
    method = ProxyCLIP({**TINY, "vfm_pos_embed": "hub", "pad_multiple": 8}, vfm=dino)
    image = window(5, h, w)
    assert method.needs() == NOTHING
    with torch.no_grad():
        expected = forward_feature(clip, dino, image, texts)
    agree(ours(clip, method, image, texts), expected)


def test_beta_and_gamma_are_the_official_normalisation(clip, dino, texts):
    method = ProxyCLIP({**TINY, "vfm_pos_embed": "hub", "pad_multiple": 8, "beta": 0.8, "gamma": 2.0},
                       vfm=dino)
    image = window(6)
    with torch.no_grad():
        expected = forward_feature(clip, dino, image, texts, beta=0.8, gamma=2.0)
        default = forward_feature(clip, dino, image, texts)
    agree(ours(clip, method, image, texts), expected)
    assert not torch.allclose(expected, default, atol=1e-3)  # the options change the result


@pytest.mark.parametrize("h, w", [(40, 48), (24, 56), (56, 56)])
def test_pad_multiple_is_the_official_centred_padding(clip, dino, texts, h, w):
    """The default pad_multiple 56: 40 -> 56 (8 on each side), 48 -> 56 (4 each side), 24 -> 56 (16 each);
    CLIP's blocks 1..L-1 run again on the padded window."""
    method = ProxyCLIP({**TINY, "vfm_pos_embed": "hub"}, vfm=dino)
    image = window(7, h, w)
    with torch.no_grad():
        expected = official_window(clip, dino, image, texts)
        unpadded = forward_feature(clip, dino, image, texts)
    got = ours(clip, method, image, texts)
    agree(got, expected)
    assert (h, w) == (56, 56) or not torch.allclose(got, unpadded, atol=1e-3)


def test_centred_padding_puts_the_odd_pixel_right_and_below():
    assert centred_padding(40, 48, 56) == (4, 4, 8, 8)
    assert centred_padding(45, 56, 56) == (0, 0, 5, 6)
    assert centred_padding(40, 48, 1) == (0, 0, 0, 0)
    for h, w in [(1, 1), (37, 90), (112, 113)]:
        assert centred_padding(h, w, 56) == compute_padsize(h, w, 56)


def test_a_window_stretched_by_the_protocol_keeps_its_padding(clip, dino, texts):
    """remainder=drop asks for logits larger than the window: the padded window's logits, cut, then
    stretched (bilinear) to that size."""
    method = ProxyCLIP({**TINY, "vfm_pos_embed": "hub"}, vfm=dino)
    image = window(8, 40, 48)
    got = ours(clip, method, image, texts, size=(45, 50))
    with torch.no_grad():
        expected = F.interpolate(official_window(clip, dino, image, texts), size=(45, 50), mode="bilinear")
    agree(got, expected)


def test_windows_of_a_batch_are_independent(clip, dino, texts):
    """mean S per window: the official torch.mean runs over the batch, which holds one window there."""
    method = ProxyCLIP({**TINY, "pad_multiple": 8}, vfm=dino)
    images = torch.cat([window(9), window(10)])
    both = ours(clip, method, images, texts)
    for i in range(2):
        agree(both[i : i + 1], ours(clip, method, images[i : i + 1], texts))


def timm_proxy(vfm, image):
    """timm's own forward (dynamic_img_size: positions resampled by resample_abs_pos_embed in float32),
    patches after the prefix tokens: the proxy of the timm rule and of DINOv2's hub (hub/backbones.py)."""
    with torch.no_grad():
        x = vfm.forward_features(unnorm_norm(image))[:, vfm.num_prefix_tokens :]
    ph, pw = vfm.patch_embed.patch_size
    grid = (image.shape[-2] // ph, image.shape[-1] // pw)
    return x.transpose(1, 2).reshape(x.shape[0], -1, *grid)


def test_vfm_pos_embed_timm_is_timms_resampling(clip, dino, texts):
    """timm resamples positions in float32 (layers/pos_embed.py), this method in the window's dtype: 1e-6."""
    image = window(11)
    got = vfm_features(dino, unnorm_norm(image), "timm")
    expected = timm_proxy(dino, image)
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-5)
    method = ProxyCLIP({**TINY, "pad_multiple": 8}, vfm=dino)
    with torch.no_grad():
        official_logits = forward_feature(clip, dino, image, texts, ex_feats=expected)
    assert torch.allclose(ours(clip, method, image, texts), official_logits, atol=1e-6)
    hub = vfm_features(dino, unnorm_norm(image), "hub")
    assert (hub - got).abs().max() > 1e-3  # the two rules differ off the trained grid


def test_the_two_position_rules_agree_on_the_trained_grid(dino):
    image = unnorm_norm(window(12, 32, 32))
    assert torch.equal(vfm_features(dino, image, "hub"), vfm_features(dino, image, "timm"))


def test_a_dinov2_layout_drops_the_class_token_and_the_registers(clip, texts):
    """DINOv2 with registers (timm vit_base_patch14_reg4_dinov2: 4 registers, positions on the patches only,
    layer scale) at toy size and patch 14: the proxy is timm's normed patch tokens (segmentor :156-159)."""
    vfm = tiny_dino(20, img_size=56, patch_size=14, reg_tokens=4, no_embed_class=True, init_values=1e-5)
    image = window(13, 56, 112)
    expected = timm_proxy(vfm, image)
    got = vfm_features(vfm, unnorm_norm(image), "timm")
    assert got.shape == (1, 48, 4, 8)
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-5)
    method = ProxyCLIP(TINY, vfm=vfm)
    with torch.no_grad():
        official_logits = forward_feature(clip, vfm, image, texts, ex_feats=expected)
    assert torch.allclose(ours(clip, method, image, texts), official_logits, atol=1e-6)


def test_a_window_not_a_multiple_of_the_vfm_patch_uses_its_whole_patches(clip, texts):
    """pad_multiple 8 with a patch-14 VFM: the VFM sees 42 x 56 of a 48 x 64 window, as its convolution
    would; the logits at its 3 x 4 grid are stretched over the window (segmentor :182)."""
    vfm = tiny_dino(21, img_size=56, patch_size=14)
    image = window(14, 48, 64)
    method = ProxyCLIP({**TINY, "vfm_pos_embed": "hub", "pad_multiple": 8}, vfm=vfm)
    with torch.no_grad():
        feat = dino_get_intermediate_layers(vfm, unnorm_norm(image)[..., :42, :56])[0]
        ex_feats = feat[:, 1:].reshape(1, 3, 4, -1).permute(0, 3, 1, 2)
        visual = visual_forward(clip.model.visual, image, ex_feats, 1.2, 3.0)
        logits = F.normalize(visual, dim=-1) @ texts.T
        expected = F.interpolate(logits.permute(0, 2, 1).reshape(1, -1, 3, 4), size=(48, 64), mode="bilinear")
    agree(ours(clip, method, image, texts), expected)


def test_vfm_input_is_the_window_in_imagenet_statistics():
    image = window(15)
    assert torch.allclose(vfm_input(image, MEAN, STD), unnorm_norm(image), atol=1e-12, rtol=0)


# ------------------------------------------------------------------------------------------------ options


@pytest.mark.parametrize("options, message", [
    ({"tau": 1.0}, "no option"),
    ({"vfm": "resnet50"}, "timm ViT"),
    ({"vfm": "vit_base_patch8_224.dino"}, "without a tag"),
    ({"vfm_weights": "imagenet_nonsense"}, "neither a file nor a timm tag"),
    ({"vfm_weights": 3}, "vfm_weights"),
    ({"vfm_pos_embed": "bilinear"}, "vfm_pos_embed"),
    ({"beta": "1.2"}, "beta"),
    ({"beta": float("nan")}, "beta"),
    ({"gamma": 0.0}, "gamma must be positive"),
    ({"gamma": True}, "gamma"),
    ({"pad_multiple": 0}, "pad_multiple"),
    ({"pad_multiple": 8.0}, "pad_multiple"),
])
def test_options_are_validated(options, message):
    with pytest.raises(ValueError, match=message):
        build_method("proxyclip", options)


def test_the_defaults_are_the_official_values_but_the_position_rule():
    method = build_method("proxyclip")
    assert method.options == {"vfm": "vit_base_patch8_224", "vfm_weights": "dino", "vfm_pos_embed": "timm",
                              "beta": 1.2, "gamma": 3.0, "pad_multiple": 56, "vfm_cache": None}
    ProxyCLIP({"vfm": "vit_base_patch14_reg4_dinov2", "vfm_weights": "lvd142m"})  # the other official VFMs
    ProxyCLIP({"vfm": "vit_base_patch16_224", "vfm_weights": "dino"})


def test_a_vfm_that_is_not_a_timm_vit_is_refused():
    with pytest.raises(TypeError, match="timm VisionTransformer"):
        ProxyCLIP(TINY, vfm=nn.Linear(2, 2))


# ------------------------------------------------------------------------------------------------ weights


def test_missing_vfm_weights_stop_at_once_naming_the_file(tmp_path, monkeypatch, offline):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # no connection tried, no wait (the offline fixture)
    with pytest.raises(MissingInputError, match=f"model.safetensors.*{VFM_KEY}") as info:
        build_vfm("vit_base_patch8_224", "dino")
    assert "timm/vit_base_patch8_224.dino" in str(info.value)


def test_vfm_weights_from_a_local_file(tmp_path):
    """A file is read tensors-only (safetensors, or torch.load(weights_only=True)); DINO's own checkpoints
    have the same keys as timm's; a file for another architecture is refused naming the option."""
    from safetensors.torch import save_file

    torch.manual_seed(7)
    source = build_vfm("vit_tiny_patch16_224", None)
    for p in source.parameters():
        p.data.normal_()
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    save_file(state, tmp_path / "vfm.safetensors")
    torch.save({"state_dict": state}, tmp_path / "vfm.pth")
    for file in ("vfm.safetensors", "vfm.pth"):
        built = build_vfm("vit_tiny_patch16_224", str(tmp_path / file))
        pairs = zip(built.state_dict().values(), state.values(), strict=True)
        assert all(torch.equal(a, b) for a, b in pairs)
    with pytest.raises(ConfigError, match=VFM_KEY):
        build_vfm("vit_small_patch16_224", str(tmp_path / "vfm.safetensors"))  # another width
    with pytest.raises(MissingInputError, match="does not exist"):
        build_vfm("vit_tiny_patch16_224", str(tmp_path / "absent.pth"))


def test_the_vfm_is_built_once_frozen_in_eval_mode():
    a = vfm_model("vit_tiny_patch16_224", None, torch.device("cpu"), torch.float64)
    b = vfm_model("vit_tiny_patch16_224", None, torch.device("cpu"), torch.float64)
    assert a is b and not a.training and a.pos_embed.dtype == torch.float64
    assert not any(p.requires_grad for p in a.parameters())
    again = build_vfm("vit_tiny_patch16_224", None)  # a random VFM is the same in every process (seeded)
    assert torch.equal(again.pos_embed.double(), a.pos_embed)


# ------------------------------------------------------------------------------------------------ preset


PROXY = "mc-lan/ProxyCLIP@e7b767f"
EIGHT = ("voc21", "context60", "coco_object", "voc20", "context59", "coco_stuff171", "cityscapes", "ade20k")


def official_values(bench):
    """(short side, crop, stride, prob_thd) of configs/cfg_<bench>.py over proxyclip_segmentor.py:31."""
    short = {"ade20k": 448, "cityscapes": 448, "ade847": 448, "pc459": 448}.get(bench, 336)  # Resize :14-16
    crop = 224 if bench == "cityscapes" else 336  # cfg_city_scapes.py:7 slide_crop=224; segmentor :31
    thd = {"voc21": 0.2, "context60": 0.15, "coco_object": 0.25}.get(bench, 0.0)  # cfg_*.py:6
    return short, crop, 112, thd  # stride: segmentor :31, cfg_city_scapes.py:6


@pytest.mark.parametrize("bench", [*EIGHT, "ade847", "pc459"])
def test_the_paper_preset_holds_the_official_values(bench):
    from data_modules.name_sets import NAME_SETS

    assert NAME_SETS["proxyclip"].separator == "; "  # proxyclip_segmentor.py:336
    cfg = load_config("baseline_proxyclip", ["eval.preset=paper"])
    assert (cfg.model.clip.name, cfg.model.clip.pretrained) == ("ViT-B-16-quickgelu", "openai")  # :40
    assert cfg.model.clip.pos_embed == "lineage"  # transformer.py:513-516, 540-558
    e = eval_for(cfg.eval, bench)
    short, crop, stride, thd = official_values(bench)
    got = (e.names, e.mode, e.short_side, e.resize, e.crop, e.stride, e.logit_scale, e.bg_threshold,
           e.bg_area)
    assert got == ("proxyclip", "slide", short, "short", crop, stride, 40, thd, None), f"{PROXY} cfg_{bench}"
    shared = (e.templates, e.background, e.resize_backend, e.remainder, e.precision, list(e.scales), e.flip,
              e.pamr_iterations)
    assert shared == ("imagenet80", "softmax", "cv2", "pad", "fp16", [1.0], False, 0)
    assert dict(e.method_options) == {"vfm": "vit_base_patch8_224", "vfm_weights": "dino",
                                      "vfm_pos_embed": "hub", "beta": 1.2, "gamma": 3.0, "pad_multiple": 56}


# the official configs/cls_*.txt, md5 of their bytes (git show e7b767f:configs/cls_<file>.txt | md5sum)
NAME_FILES = {
    "voc21": ("voc21", "ea6e671fbb6d61ac6ac45667ff030f69"),
    "context60": ("context60", "478af0e4f26e096e35a019db8be4cc96"),
    "coco_object": ("coco_object", "14582307b68e7849d711e4db79dc7604"),
    "voc20": ("voc20", "57b05f75d2799ee43d3bade790d54f39"),
    "context59": ("context59", "de9023e283be0aba552072e12da6267d"),
    "coco_stuff171": ("coco_stuff", "2d025c4203763ced2e27ec26b7c2a700"),
    "cityscapes": ("city_scapes", "a8bbbb996e8281b62e333ffe461b129e"),
    "ade20k": ("ade20k", "e66c13f6d5984206f5ff5d66c7250545"),
    "ade847": ("ade20k847", "f2f36ca65fb712efc4ec1202b893170c"),
    "pc459": ("context459", "99408fde927f530fa574f7a52a8597dd"),
}


def test_the_shipped_names_are_the_official_files():
    from data_modules.benchmarks import benchmark
    from data_modules.name_sets import NAMES_DIR
    from lseg_pacl.evaluation.labels import read_synonyms

    for bench, (_, md5) in NAME_FILES.items():
        path = NAMES_DIR / "proxyclip" / f"{bench}.txt"
        assert hashlib.md5(path.read_bytes()).hexdigest() == md5, path
        names = read_synonyms(path, len(benchmark(bench).classes), "; ")
        if bench in ("voc21", "coco_object"):  # the background line: 26 / 17 stuff words
            assert len(names[0]) == {"voc21": 26, "coco_object": 17}[bench]
            assert names[0][:2] == ("sky", "wall")
    ade = read_synonyms(NAMES_DIR / "proxyclip" / "ade847.txt", 847, "; ")
    assert any("," in n[0] for n in ade)  # '; ' keeps WordNet's commas inside one prompt


# ------------------------------------------------------------------------------------------------ end to end


@pytest.mark.slow  # 3 s on an idle machine, 10-16 s on a busy one
def test_eval_runs_end_to_end(world, tiny_clip_file, tmp_path):
    from lseg_pacl.commands.cli import main

    args = ["eval", "baseline_proxyclip", "benchmarks=[synthetic]", f"data.val.roots.synthetic={world}",
            "model.clip.name=lseg-tiny-vit", f"model.clip.pretrained={tiny_clip_file}", "eval.short_side=48",
            "eval.crop=32", "eval.stride=16", "eval.max_images=2", "eval.pictures=0", "data.num_workers=0",
            "logger.wandb.mode=disabled", f"run.root={tmp_path}",
            "eval.method_options.vfm=vit_tiny_patch16_224", "eval.method_options.vfm_weights=null"]
    assert main(args) == 0
    results = json.loads(next((tmp_path / "baseline_proxyclip").glob("eval-*/results.json")).read_text())
    synthetic = results["synthetic"]
    assert isinstance(synthetic["mIoU"], float) and 0 <= synthetic["mIoU"] <= 1
    assert synthetic["settings"]["model"] == "clip: lseg-tiny-vit (proxyclip)"
    assert synthetic["settings"]["method_options"]["vfm"] == "vit_tiny_patch16_224"
    assert synthetic["settings"]["method"] == "ProxyCLIP"


def test_eval_without_the_vfm_weights_stops_at_once_naming_them(world, tiny_clip_file, tmp_path, monkeypatch,
                                                                   capsys, offline):
    from lseg_pacl.commands.cli import main

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    args = ["eval", "baseline_proxyclip", "benchmarks=[synthetic]", f"data.val.roots.synthetic={world}",
            "model.clip.name=lseg-tiny-vit", f"model.clip.pretrained={tiny_clip_file}", "eval.short_side=48",
            "eval.crop=32", "eval.stride=16", "eval.max_images=1", "eval.pictures=0", "data.num_workers=0",
            "logger.wandb.mode=disabled", f"run.root={tmp_path}"]
    assert main(args) == MissingInputError.exit_code  # no connection tried, no wait (the offline fixture)
    out = capsys.readouterr()
    assert "model.safetensors" in out.err + out.out and VFM_KEY in out.err + out.out


def test_a_uniform_window_masks_every_similarity_as_the_official_code_does():
    """mean S = 1 > 1 / beta: every S' < 0 -> -inf, softmax NaN (transformer.py:573-578), kept."""
    from lseg_pacl.methods.proxyclip import proxy_attention

    features = torch.ones(1, 8, 2, 3, dtype=torch.float64)
    assert torch.isnan(proxy_attention(features)).all()
    assert torch.isfinite(proxy_attention(features, beta=0.9)).all()


def test_the_vfm_features_go_through_the_frozen_feature_cache(clip, texts, tmp_path, monkeypatch):
    """vfm_cache: the VFM's features of a window are computed once, then read back bit for bit; the store is
    named after the weights' identity (a file: its checksum), and random weights are refused."""
    from safetensors.torch import save_file

    from lseg_pacl.methods import proxyclip

    torch.manual_seed(7)
    source = build_vfm("vit_tiny_patch16_224", None)
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, tmp_path / "vfm.safetensors")
    options = {"vfm": "vit_tiny_patch16_224", "vfm_weights": str(tmp_path / "vfm.safetensors"),
               "vfm_cache": str(tmp_path / "cache"), "pad_multiple": 1}
    calls = []
    real = proxyclip.vfm_features
    monkeypatch.setattr(proxyclip, "vfm_features", lambda *a: calls.append(1) or real(*a))
    image = window(5, 32, 48).double()

    def run(method):
        with torch.no_grad():
            return method.logits(clip, clip.trunk(image), image, texts, (32, 48))

    first = run(build_method("proxyclip", options))
    again = run(build_method("proxyclip", options))  # a new instance: the features come from disk
    uncached = run(build_method("proxyclip", {**options, "vfm_cache": None}))
    assert len(calls) == 2 and torch.equal(first, again) and torch.equal(first, uncached)
    (store,) = [p for p in (tmp_path / "cache").iterdir() if p.is_dir()]
    assert len(list(store.glob("*.npy"))) == 1 and "sha256:" in (store / "meta.json").read_text()
    with pytest.raises(ValueError, match="random ones"):
        build_method("proxyclip", {**options, "vfm_weights": None})
