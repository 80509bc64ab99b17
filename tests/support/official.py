"""Direct, slow transcriptions of the SCLIP lineage's official inference code, for fidelity tests.

Each function follows its source line for line (names kept), on one image at a time, in whatever dtype it is
given: SCLIP wangf3014/SCLIP@b56bd30 (``clip_segmentor.py``, ``clip/model.py``, ``pamr.py``), NACLIP
sinahmr/NACLIP@0cac3a6 (``naclip.py``, ``clip/model.py``), and mmcv's ``Resize(keep_ratio=True)`` as the
configs' test pipelines use it. The model is any open_clip CLIP: only its weights are read.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
import torch.nn.functional as F


def mmseg_resize(image: np.ndarray, short: int) -> np.ndarray:
    """configs/cfg_*.py ``Resize(scale=(2048, short), keep_ratio=True)``: mmcv rescale_size (factor
    min(2048 / long, short / short side), sizes int(x * f + 0.5)) and cv2 bilinear on the 8-bit HWC image."""
    h, w = image.shape[:2]
    f = min(2048 / max(h, w), short / min(h, w))
    return cv2.resize(image, (int(w * f + 0.5), int(h * f + 0.5)), interpolation=cv2.INTER_LINEAR)


def interpolate_pos_encoding(positional_embedding, n_tokens, w, h, patch_size):
    """SCLIP clip/model.py:263-281 (= NACLIP clip/model.py:134-151), with the caller's count check
    (SCLIP clip/model.py:239-242). ``w`` is the input's height and ``h`` its width, as named there."""
    if n_tokens == positional_embedding.shape[0]:
        return positional_embedding
    npatch = n_tokens - 1
    n = positional_embedding.shape[0] - 1
    if npatch == n and w == h:
        return positional_embedding
    class_pos_embed = positional_embedding[[0]]
    patch_pos_embed = positional_embedding[1:]
    dim = positional_embedding.shape[-1]
    w0 = w // patch_size
    h0 = h // patch_size
    w0, h0 = w0 + 0.1, h0 + 0.1
    patch_pos_embed = F.interpolate(
        patch_pos_embed.reshape(1, int(math.sqrt(n)), int(math.sqrt(n)), dim).permute(0, 3, 1, 2),
        scale_factor=(w0 / math.sqrt(n), h0 / math.sqrt(n)),
        mode="bicubic",
    )
    assert int(w0) == patch_pos_embed.shape[-2] and int(h0) == patch_pos_embed.shape[-1]
    patch_pos_embed = patch_pos_embed.permute(0, 2, 3, 1).view(1, -1, dim)
    return torch.cat((class_pos_embed.unsqueeze(0), patch_pos_embed), dim=1)[0]


def gaussian_window(dim1, dim2, std=1.0, dtype=torch.float64):
    """NACLIP clip/model.py:153-165."""
    constant = 1 / (std * math.sqrt(2))
    ks = []
    for dim in [dim1, dim2]:
        start = -(dim - 1) / 2.0
        ks.append(torch.linspace(start=start * constant, end=(start + (dim - 1)) * constant, steps=dim,
                                 dtype=dtype))
    dist_square_to_mu = (torch.stack(torch.meshgrid(*ks, indexing="ij")) ** 2).sum(0)
    return torch.exp(-dist_square_to_mu)


def attention_addition(dim1, dim2, window):
    """NACLIP clip/model.py:167-176 (adjust_for_cls=True)."""
    m = torch.einsum("ij,kl->ijkl", torch.eye(dim1, dtype=window.dtype), torch.eye(dim2, dtype=window.dtype))
    m = m.permute((0, 3, 1, 2)).contiguous()
    out = F.conv2d(m.view(-1, dim1, dim2).unsqueeze(1), window.unsqueeze(0).unsqueeze(1), padding="same")
    out = out.squeeze(1).view(dim1 * dim2, dim1 * dim2)
    v_adjusted = torch.vstack([torch.zeros((1, dim1 * dim2), dtype=out.dtype), out])
    return torch.hstack([torch.zeros((dim1 * dim2 + 1, 1), dtype=out.dtype), v_adjusted])


def custom_attn(attn_layer, x, n_patches, strategy, gaussian_std=5.0):
    """SCLIP clip/model.py:283-313 (csa) and NACLIP clip/model.py:178-232 (naclip); x is LND."""
    num_heads = attn_layer.num_heads
    num_tokens, bsz, embed_dim = x.size()
    head_dim = embed_dim // num_heads
    scale = head_dim**-0.5
    q, k, v = F.linear(x, attn_layer.in_proj_weight, attn_layer.in_proj_bias).chunk(3, dim=-1)
    q = q.contiguous().view(-1, bsz * num_heads, head_dim).transpose(0, 1)
    k = k.contiguous().view(-1, bsz * num_heads, head_dim).transpose(0, 1)
    v = v.contiguous().view(-1, bsz * num_heads, head_dim).transpose(0, 1)
    if strategy == "csa":
        q_attn = torch.bmm(q, q.transpose(1, 2)) * scale
        k_attn = torch.bmm(k, k.transpose(1, 2)) * scale
        attn_weights = F.softmax(q_attn, dim=-1) + F.softmax(k_attn, dim=-1)
    else:
        window_size = [side * 2 - 1 for side in n_patches]
        window = gaussian_window(*window_size, std=gaussian_std, dtype=x.dtype)
        addition = attention_addition(*n_patches, window).unsqueeze(0).to(x.dtype)
        attn_weights = torch.bmm(k, k.transpose(1, 2)) * scale + addition
        attn_weights = F.softmax(attn_weights, dim=-1)
    attn_output = torch.bmm(attn_weights, v)
    attn_output = attn_output.transpose(0, 1).contiguous().view(-1, bsz, embed_dim)
    return attn_layer.out_proj(attn_output)


def encode_image(model, x, strategy):
    """VisionTransformer.forward(return_all=True): SCLIP clip/model.py:229-255 (csa: residual and FFN kept),
    NACLIP clip/model.py:94-132 (arch 'reduced': the attention output alone)."""
    visual = model.visual
    _, _, w, h = x.shape
    patch = visual.conv1.kernel_size[0]
    n_patches = (w // patch, h // patch)
    x = visual.conv1(x)
    x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
    cls = visual.class_embedding.to(x.dtype) + torch.zeros(x.shape[0], 1, x.shape[-1], dtype=x.dtype)
    x = torch.cat([cls, x], dim=1)
    x = x + interpolate_pos_encoding(visual.positional_embedding, x.shape[1], w, h, patch).to(x.dtype)
    x = visual.ln_pre(x)
    batch_first = getattr(visual.transformer, "batch_first", True)
    x = x.permute(1, 0, 2)  # NLD -> LND
    blocks = list(visual.transformer.resblocks)
    for blk in blocks[:-1]:
        x = blk(x.permute(1, 0, 2)).permute(1, 0, 2) if batch_first else blk(x)
    blk = blocks[-1]
    if strategy == "csa":
        x = x + custom_attn(blk.attn, blk.ln_1(x), n_patches, "csa")
        x = x + blk.mlp(blk.ln_2(x))
    else:
        x = custom_attn(blk.attn, blk.ln_1(x), n_patches, "naclip")
    x = x.permute(1, 0, 2)
    return visual.ln_post(x) @ visual.proj


def forward_feature(model, img, query_features, strategy):
    """SCLIP clip_segmentor.py:59-78 / NACLIP naclip.py:54-69: per-text cosines bilinear to the input size."""
    image_features = encode_image(model, img, strategy)[:, 1:]
    image_features = image_features / image_features.norm(dim=-1, keepdim=True)
    logits = image_features @ query_features.T
    patch = model.visual.conv1.kernel_size[0]
    w, h = img[0].shape[-2] // patch, img[0].shape[-1] // patch
    logits = logits.permute(0, 2, 1).reshape(-1, logits.shape[-1], w, h)
    return F.interpolate(logits, size=img.shape[-2:], mode="bilinear")


def forward_slide(model, img, query_features, strategy, stride, crop):
    """SCLIP clip_segmentor.py:80-119 / NACLIP naclip.py:71-108 (without the final resize)."""
    batch_size, _, h_img, w_img = img.shape
    h_grids = max(h_img - crop + stride - 1, 0) // stride + 1
    w_grids = max(w_img - crop + stride - 1, 0) // stride + 1
    preds = img.new_zeros((batch_size, query_features.shape[0], h_img, w_img))
    count_mat = img.new_zeros((batch_size, 1, h_img, w_img))
    for h_idx in range(h_grids):
        for w_idx in range(w_grids):
            y1, x1 = h_idx * stride, w_idx * stride
            y2, x2 = min(y1 + crop, h_img), min(x1 + crop, w_img)
            y1, x1 = max(y2 - crop, 0), max(x2 - crop, 0)
            crop_seg_logit = forward_feature(model, img[:, :, y1:y2, x1:x2], query_features, strategy)
            pad = (int(x1), int(preds.shape[3] - x2), int(y1), int(preds.shape[2] - y2))
            preds += F.pad(crop_seg_logit, pad)
            count_mat[:, :, y1:y2, x1:x2] += 1
    return preds / count_mat


def pamr(x, mask, num_iter, dilations):
    """pamr.py:10-146 (PAMR with LocalAffinityAbs, LocalAffinityCopy, LocalStDev), re-expressed with the same
    shift kernels, in the input's dtype."""
    kernel8 = torch.zeros(8, 1, 3, 3, dtype=x.dtype)
    kernel9 = torch.zeros(9, 1, 3, 3, dtype=x.dtype)
    positions = [(r, c) for r in range(3) for c in range(3)]
    for i, (r, c) in enumerate(p for p in positions if p != (1, 1)):
        kernel8[i, 0, r, c] = 1
    for i, (r, c) in enumerate(positions):
        kernel9[i, 0, r, c] = 1
    diff = -kernel8.clone()
    diff[:, 0, 1, 1] = 1

    def local(t, kernel):
        b, k, h, w = t.shape
        t = t.reshape(b * k, 1, h, w)
        out = [F.conv2d(F.pad(t, [d] * 4, mode="replicate"), kernel, dilation=d) for d in dilations]
        return torch.cat(out, 1).view(b, k, -1, h, w)

    mask = F.interpolate(mask, size=x.shape[-2:], mode="bilinear", align_corners=True)
    x_std = local(x, kernel9).std(2, keepdim=True)
    aff = -local(x, diff).abs() / (1e-8 + 0.1 * x_std)
    aff = F.softmax(aff.mean(1, keepdim=True), 2)
    for _ in range(num_iter):
        mask = (local(mask, kernel8) * aff).sum(2)
    return mask


def postprocess(seg_logits, query_idx, logit_scale, prob_thd, area_thd=None):
    """SCLIP clip_segmentor.py:148-170 for one image (NACLIP naclip.py:139-153 is this without the area
    rule): seg_logits [Q, H, W] per-text cosines, query_idx the class of each text."""
    seg_logits = seg_logits * logit_scale
    seg_logits = seg_logits.softmax(0)
    num_cls, num_queries = max(query_idx) + 1, len(query_idx)
    query_idx = torch.tensor(query_idx)
    if num_cls != num_queries:
        seg_logits = seg_logits.unsqueeze(0)
        cls_index = F.one_hot(query_idx)
        cls_index = cls_index.T.view(num_cls, num_queries, 1, 1)
        seg_logits = (seg_logits * cls_index).max(1)[0]
    if area_thd is not None:
        predictions = F.one_hot(seg_logits.argmax(0), num_cls).to(seg_logits.dtype)
        area_pred = predictions[:, :, 1:].sum((0, 1), keepdim=True)
        area_pred = (area_pred > area_thd * area_pred.sum()).to(seg_logits.dtype)
        seg_logits[1:] *= area_pred.transpose(0, -1)
    seg_pred = seg_logits.argmax(0, keepdim=True)
    seg_pred[seg_logits.max(0, keepdim=True)[0] < prob_thd] = 0
    return seg_pred[0]
