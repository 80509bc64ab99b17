"""ResCLIP against a direct, slow transcription of its official code (yvhangyang/ResCLIP@0e085f7,
``clip/model.py`` = m.py, ``resclip_segmentor.py``), written below, in float64 on a 4-block CLIP whose visual
weights (norms and biases too) are perturbed at random, on a non-square 40x56 window (5x7 patches of 8).

Transcription notes (each a departure from the letter of the official code, none from its arithmetic):
- the official code hard-codes RCS to blocks 6-9 (m.py:328 ``attn_map[5..8]``) and pass 1's PAMR to
  ``PAMR(10, dilations=(8, 16))`` (m.py:279); they are parameters here, so the 4-block model can run them;
- value tensors the official code builds in the default dtype (the SFR matrix, its Gaussian kernel and decay,
  m.py:165, 206, 220-222) are float64 here, and the fp16 cast of the SFR matrix (m.py:478) is left out except
  where a test measures it; the path coordinates (m.py:137-140) stay float32, as they decide labels;
- the try/except around pass 1's PAMR (m.py:280-284) and ``.cuda()`` calls are left out; one image at a time.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from support import official
from support.models import perturbed_tiny_clip
from torch import nn

from lseg_pacl.config.loading import eval_for, load_config
from lseg_pacl.errors import ConfigError
from lseg_pacl.methods import build_method
from lseg_pacl.methods.resclip import ResCLIP, _straight_paths, patch_labels, sfr_matrix
from lseg_pacl.models.trunk import Needs

SIZE = (40, 56)  # 5 x 7 patches of 8 pixels
TEXTS = 7
# The official VOC21 values (configs/cfg_voc21.py:8-11) with this 4-block CLIP's RCS blocks and a temp_thd at
# which pass 1's labels are varied (random weights give flat probabilities).
BASE = {"rcs_layers": [2, 3], "temp_thd": 0.3}


# ---------------------------------------------------------------------------------- the official code


def custom_attn(attn_layer, x, n_patches=None, attn_rcs=None, attn_sfr=None, attn_sfr_weights=None,
                attn_rcs_weights=None, use_custom_attn=False, with_attn=False, gaussian_std=5.0,
                sfr_fp16=False):
    """m.py:451-604 with attn_strategy 'resclip' (x is LND)."""
    num_heads = attn_layer.num_heads
    num_tokens, bsz, embed_dim = x.size()
    head_dim = embed_dim // num_heads
    scale = head_dim**-0.5
    q, k, v = F.linear(x, attn_layer.in_proj_weight, attn_layer.in_proj_bias).chunk(3, dim=-1)
    q = q.contiguous().view(-1, bsz * num_heads, head_dim).transpose(0, 1)
    k = k.contiguous().view(-1, bsz * num_heads, head_dim).transpose(0, 1)
    v = v.contiguous().view(-1, bsz * num_heads, head_dim).transpose(0, 1)
    if use_custom_attn:
        window_size = [side * 2 - 1 for side in n_patches]  # m.py:464-471
        window = official.gaussian_window(*window_size, std=gaussian_std, dtype=x.dtype)  # m.py:398-410
        addition = official.attention_addition(*n_patches, window).unsqueeze(0).to(x.dtype)  # m.py:414-424
        omega = addition.clone()
        attn_weights = torch.bmm(k, k.transpose(1, 2)) * scale  # m.py:473-474
        if attn_sfr is not None:  # m.py:476-484
            attn_sfr = attn_sfr / torch.max(attn_sfr)
            if sfr_fp16:
                attn_sfr = attn_sfr.to(torch.float16)
            tau_attn_sfr, lambda_attn_sfr = attn_sfr_weights
            attn_weights = tau_attn_sfr * ((1 - lambda_attn_sfr) * attn_weights + lambda_attn_sfr * attn_sfr)
        attn_weights += omega  # m.py:486-487
        attn_weights = F.softmax(attn_weights, dim=-1)
        if attn_rcs is not None:  # m.py:489-494
            tau_attn_rcs, lambda_attn_rcs = attn_rcs_weights
            attn_weights = tau_attn_rcs * ((1 - lambda_attn_rcs) * attn_weights + lambda_attn_rcs * attn_rcs)
    else:  # m.py:590-592
        attn_weights = torch.bmm(q * scale, k.transpose(1, 2))
        attn_weights = F.softmax(attn_weights, dim=-1)
    attn_output = torch.bmm(attn_weights, v)  # m.py:597-599
    attn_output = attn_output.transpose(0, 1).contiguous().view(-1, bsz, embed_dim)
    attn_output = attn_layer.out_proj(attn_output)
    if with_attn:
        return attn_output, attn_weights
    return attn_output


def create_patch_matrix(seg_logit_temp, n_patches, patch_size, temp_thd):
    """m.py:106-126."""
    seg_logit_temp = seg_logit_temp.squeeze(0)
    seg_pred = seg_logit_temp.argmax(0, keepdim=True)
    seg_pred[seg_logit_temp.max(0, keepdim=True)[0] < temp_thd] = 0
    seg_pred = seg_pred.squeeze(0)
    patches = seg_pred.unfold(0, patch_size, patch_size).unfold(1, patch_size, patch_size)
    patches = patches.reshape(n_patches[0], n_patches[1], -1)
    return torch.mode(patches, dim=-1)[0]


def check_path(start_coords, end_coords, patch_logit_temp):
    """m.py:130-148 (float32 coordinates: torch.linspace in the default dtype)."""
    steps = torch.max(torch.abs(end_coords - start_coords), dim=1)[0]
    max_steps = steps.max().item()
    t = torch.linspace(0, 1, steps=max_steps + 1, dtype=torch.float32).unsqueeze(1).unsqueeze(0)
    current_coords = start_coords.unsqueeze(1) * (1 - t) + end_coords.unsqueeze(1) * t
    current_coords = current_coords.round().long()
    valid_steps = torch.arange(max_steps + 1).unsqueeze(0) <= steps.unsqueeze(1)
    start_values = patch_logit_temp[start_coords[:, 0], start_coords[:, 1]].unsqueeze(1)
    current_values = patch_logit_temp[current_coords[:, :, 0], current_coords[:, :, 1]]
    path_valid = (current_values == start_values) | ~valid_steps
    return path_valid.all(dim=1)


def generate_attention_sfr(patch_logit_temp, n_patches, gaussian_std=1.0, delete_same_entity=True,
                           dtype=torch.float64):
    """m.py:152-240."""
    h, w = n_patches
    total_patches = h * w
    attention_sfr = torch.zeros((total_patches + 1, total_patches + 1), dtype=dtype)
    patch_indices = torch.arange(total_patches)
    i, j = torch.meshgrid(patch_indices, patch_indices, indexing="ij")
    i_w, i_h = torch.div(i, w, rounding_mode="floor"), i % w
    j_w, j_h = torch.div(j, w, rounding_mode="floor"), j % w
    mask = patch_logit_temp[i_w, i_h] == patch_logit_temp[j_w, j_h]
    attention_sfr[1:, 1:] = mask.to(dtype)
    attention_sfr.diagonal().fill_(1)
    attention_sfr[0, :] = 0
    attention_sfr[:, 0] = 0
    non_cls_attention = attention_sfr[1:, 1:]
    if delete_same_entity:
        start_coords = torch.stack((i_w, i_h), dim=-1).view(-1, 2)
        end_coords = torch.stack((j_w, j_h), dim=-1).view(-1, 2)
        valid_paths = check_path(start_coords, end_coords, patch_logit_temp)
        valid_paths = valid_paths.view(total_patches, total_patches)
        steps = torch.max(torch.abs(end_coords - start_coords), dim=1)[0]
        max_steps = steps.max().item()
        steps = steps.view(total_patches, total_patches)
        decay_factor = torch.exp(-steps.to(dtype) / max_steps)
        non_cls_attention = torch.where(valid_paths, non_cls_attention, non_cls_attention * decay_factor)
    kernel_size = min(total_patches, int(6 * gaussian_std + 1))
    kernel_size = kernel_size if kernel_size % 2 == 1 else kernel_size + 1
    x = torch.arange(kernel_size) - kernel_size // 2
    gaussian_kernel_1d = torch.exp(-(x**2).to(dtype) / (2 * gaussian_std**2))
    kernel = gaussian_kernel_1d / gaussian_kernel_1d.sum()
    padding = kernel_size // 2
    non_cls_attention_blurred = F.conv1d(non_cls_attention.unsqueeze(1), kernel.view(1, 1, -1),
                                         padding=padding).squeeze(1)
    non_cls_attention_blurred = F.relu(non_cls_attention_blurred)
    row_sums = non_cls_attention_blurred.sum(dim=1, keepdim=True)
    non_cls_attention_normalized = non_cls_attention_blurred / (row_sums + 1e-8)
    attention_sfr[1:, 1:] = non_cls_attention_normalized
    return attention_sfr.unsqueeze(0)


def create_logit_temp(visual, x, n_patches, attn_rcs, attn_rcs_weights, query_features, img, patch_size,
                      logit_scale, gaussian_std, pamr_steps, pamr_dilations):
    """m.py:242-290 (arch 'wo_resi', return_all)."""
    blk = visual.transformer.resblocks[-1]
    x = custom_attn(blk.attn, blk.ln_1(x), n_patches=n_patches, attn_rcs=attn_rcs,
                    attn_rcs_weights=attn_rcs_weights, use_custom_attn=True, gaussian_std=gaussian_std)
    x = x.permute(1, 0, 2)
    x = visual.ln_post(x) @ visual.proj
    image_features = x[:, 1:]
    image_features /= image_features.norm(dim=-1, keepdim=True)
    logits = image_features @ query_features.T
    w, h = img[0].shape[-2] // patch_size, img[0].shape[-1] // patch_size
    out_dim = logits.shape[-1]
    logits = logits.permute(0, 2, 1).reshape(-1, out_dim, w, h)
    logits = F.interpolate(logits, size=img.shape[-2:], mode="bilinear", align_corners=False)
    seg_logits_temp = logits
    if pamr_steps:  # PAMR(10, dilations=(8, 16)) in the official code; pamr.py = SCLIP's / NACLIP's
        seg_logits_temp = official.pamr(img, seg_logits_temp.to(img.dtype), pamr_steps, pamr_dilations)
    seg_logits_temp = torch.softmax(seg_logits_temp[0] * logit_scale, dim=0)
    return seg_logits_temp.unsqueeze(0)


def official_forward(visual, img, query_features, *, use_rcs=True, use_sfr=True, temp_thd=0.5,
                     attn_rcs_weights=(2.0, 0.3), attn_sfr_weights=(2.2, 0.7), delete_same_entity=True,
                     rcs_blocks=(6, 7, 8, 9), gaussian_std=5.0, logit_scale=40, pamr_steps=10,
                     pamr_dilations=(8, 16), sfr_fp16=False, keep=None):
    """m.py:294-373 (VisionTransformer.forward, return_all=True, arch 'wo_resi', strategy 'resclip')."""
    B, nc, w, h = img.shape
    patch = visual.conv1.kernel_size[0]
    n_patches = (w // patch, h // patch)
    x = visual.conv1(img)
    x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
    x = torch.cat([visual.class_embedding.to(x.dtype)
                   + torch.zeros(x.shape[0], 1, x.shape[-1], dtype=x.dtype), x], dim=1)
    pos = official.interpolate_pos_encoding(visual.positional_embedding, x.shape[1], w, h, patch)  # :377-394
    x = x + pos.to(x.dtype)
    x = visual.ln_pre(x)
    x = x.permute(1, 0, 2)
    attn_map = []
    for blk in visual.transformer.resblocks[:-1]:  # m.py:318-323
        x_i, attn_i = custom_attn(blk.attn, blk.ln_1(x), n_patches=n_patches, with_attn=True)
        x = x + x_i
        x = x + blk.mlp(blk.ln_2(x))
        attn_map.append(attn_i)
    attention_rcs = None
    if use_rcs:  # m.py:326-329
        selected_attns = torch.stack([attn_map[b - 1] for b in rcs_blocks])
        attention_rcs = selected_attns.mean(dim=0)
    attention_sfr = None
    if use_sfr:  # m.py:335-345
        seg_logit_temp = create_logit_temp(visual, x, n_patches, attention_rcs, attn_rcs_weights,
                                           query_features, img, patch, logit_scale, gaussian_std, pamr_steps,
                                           pamr_dilations)
        patch_logit_temp = create_patch_matrix(seg_logit_temp, n_patches, patch, temp_thd)
        attention_sfr = generate_attention_sfr(patch_logit_temp, n_patches, gaussian_std=gaussian_std,
                                               delete_same_entity=delete_same_entity)
        if keep is not None:
            keep["labels"] = patch_logit_temp
            keep["probabilities"] = seg_logit_temp
    blk = visual.transformer.resblocks[-1]  # m.py:349-360
    x = custom_attn(blk.attn, blk.ln_1(x), n_patches=n_patches, attn_rcs=attention_rcs,
                    attn_sfr=attention_sfr, attn_sfr_weights=attn_sfr_weights,
                    attn_rcs_weights=attn_rcs_weights, use_custom_attn=True, gaussian_std=gaussian_std,
                    sfr_fp16=sfr_fp16)
    x = x.permute(1, 0, 2)
    return visual.ln_post(x) @ visual.proj  # m.py:366-367


def official_forward_feature(visual, img, query_features, **kw):
    """resclip_segmentor.py:66-89."""
    image_features = official_forward(visual, img, query_features, **kw)
    image_features = image_features[:, 1:]
    image_features /= image_features.norm(dim=-1, keepdim=True)
    logits = image_features @ query_features.T
    patch_size = visual.conv1.kernel_size[0]
    w, h = img[0].shape[-2] // patch_size, img[0].shape[-1] // patch_size
    out_dim = logits.shape[-1]
    logits = logits.permute(0, 2, 1).reshape(-1, out_dim, w, h)
    return F.interpolate(logits, size=img.shape[-2:], mode="bilinear", align_corners=False)


# Our option -> the official parameter it stands for.
def official_kwargs(options: dict) -> dict:
    o = {**ResCLIP.defaults, **BASE, **options}
    return dict(use_rcs=o["use_rcs"], use_sfr=o["use_sfr"], temp_thd=o["temp_thd"],
                attn_rcs_weights=(o["tau_r"], o["lambda_r"]), attn_sfr_weights=(o["tau_s"], o["lambda_s"]),
                delete_same_entity=o["delete_same_entity"], rcs_blocks=tuple(o["rcs_layers"]),
                gaussian_std=o["gaussian_std"], logit_scale=o["first_pass_logit_scale"],
                pamr_steps=o["first_pass_pamr_iterations"],
                pamr_dilations=tuple(o["first_pass_pamr_dilations"]))


# ------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def clip():
    model = perturbed_tiny_clip()
    for blk in model.model.visual.transformer.resblocks:  # the transcription has no layer scales
        assert isinstance(blk.ls_1, nn.Identity) and isinstance(blk.ls_2, nn.Identity)
    return model


@pytest.fixture(scope="module")
def window():
    """A normalised 40x56 window with regions (so PAMR has edges) and noise; random unit texts."""
    g = torch.Generator().manual_seed(10)  # a seed whose pass 1 gives 4 labels, some patches unsure
    regions = F.interpolate(torch.randn(1, 3, 3, 4, generator=g, dtype=torch.float64), size=SIZE)
    image = 1.5 * regions + 0.3 * torch.randn(1, 3, *SIZE, generator=g, dtype=torch.float64)
    text = F.normalize(torch.randn(TEXTS, 128, generator=g, dtype=torch.float64), dim=-1)
    return image, text


def ours(clip, image, text, options=None, size=None):
    method = build_method("resclip", {**BASE, **(options or {})})
    with torch.no_grad():
        trunk = clip.trunk(image, method.needs())
        return method.logits(clip, trunk, image, text, size or tuple(image.shape[-2:]))


def theirs(clip, image, text, options=None, **kw):
    with torch.no_grad():
        return official_forward_feature(clip.model.visual, image, text, **official_kwargs(options or {}),
                                        **kw)


@pytest.fixture(scope="module")
def reference(clip, window):
    image, text = window
    keep = {}
    expected = theirs(clip, image, text, keep=keep)
    return ours(clip, image, text), expected, keep


# ------------------------------------------------------------------------------------------ fidelity


def test_resclip_equals_the_official_code(reference):
    got, expected, keep = reference
    assert got.dtype == torch.float64 and got.shape == (1, TEXTS, *SIZE)
    assert torch.allclose(got, expected, atol=1e-10, rtol=0)
    labels = keep["labels"]
    assert labels.unique().numel() >= 3  # pass 1 labels are varied ...
    assert (keep["probabilities"][0].amax(0) < BASE["temp_thd"]).any()  # ... some pixels unsure (label 0) ...
    valid, _, _ = _straight_paths(labels)
    same = labels.flatten()[:, None] == labels.flatten()[None, :]
    assert (same & ~valid).any()  # ... and some same-label pairs decayed


def test_pass_one_labels_are_the_official_ones(clip, window, reference):
    """Labels are text indices (not class indices) and the mode's ties go to the smallest label, as torch.mode
    does on the CPU."""
    image, text = window
    probabilities = reference[2]["probabilities"]
    got = patch_labels(probabilities, (5, 7), 8, BASE["temp_thd"])
    assert torch.equal(got[0], reference[2]["labels"])
    tie = torch.zeros(1, 3, 8, 8, dtype=torch.float64)
    tie[0, 2, :4] = 1  # half the pixels say text 2, half text 1
    tie[0, 1, 4:] = 1
    assert patch_labels(tie, (1, 1), 8, 0.5).item() == 1
    assert torch.mode(torch.tensor([2] * 32 + [1] * 32))[0].item() == 1


def test_the_official_fp16_cast_of_the_sfr_matrix_changes_the_logits_only_slightly(clip, window, reference):
    """m.py:478 casts A_sfr to fp16 even in fp32 runs; this port keeps the computation's dtype."""
    image, text = window
    cast = theirs(clip, image, text, sfr_fp16=True)
    diff = (reference[0] - cast).abs().max().item()
    assert 0 < diff < 5e-5  # 4.6e-6 here


@pytest.mark.parametrize("option, value", [
    ("tau_r", 1.5), ("lambda_r", 0.6), ("tau_s", 1.8), ("lambda_s", 0.4), ("temp_thd", 0.1),
    ("rcs_layers", [1, 2, 3]), ("gaussian_std", 2.0), ("delete_same_entity", False),
    ("first_pass_pamr_iterations", 0), ("first_pass_pamr_dilations", [1, 2]),
    ("first_pass_logit_scale", 10.0),
    ("use_rcs", False), ("use_sfr", False),
])
def test_each_option_changes_what_the_official_parameter_changes(clip, window, reference, option, value):
    image, text = window
    got = ours(clip, image, text, {option: value})
    expected = theirs(clip, image, text, {option: value})
    assert torch.allclose(got, expected, atol=1e-10, rtol=0)
    assert not torch.allclose(got, reference[0], atol=1e-6, rtol=0), f"{option}={value} changed nothing"


def test_without_rcs_and_sfr_it_is_naclip(clip, window):
    image, text = window
    got = ours(clip, image, text, {"use_rcs": False, "use_sfr": False})
    with torch.no_grad():
        naclip = build_method("naclip").logits(clip, clip.trunk(image), image, text, SIZE)
    assert torch.allclose(got, naclip, atol=1e-12, rtol=0)


def test_a_window_with_a_remainder_sees_its_last_whole_patches_replicated(clip, window):
    """remainder: drop gives the method the whole patches and the window's size; pass 1 is brought to that
    size and PAMR guided by the window padded with its last column: equal to the official code on a window
    whose remainder pixels are that column."""
    image, text = window
    full = torch.cat([image, image[..., -1:].expand(-1, -1, -1, 5)], dim=-1)  # 40 x 61, 5 pixels beyond
    got = ours(clip, image, text, size=(40, 61))
    expected = theirs(clip, full, text)
    assert torch.allclose(got, expected, atol=1e-10, rtol=0)


def test_each_image_of_a_batch_is_its_own(clip, window):
    image, text = window
    other = torch.flip(image, dims=[-1]) * 0.7
    both = ours(clip, torch.cat([image, other]), text)
    assert torch.allclose(both[:1], ours(clip, image, text), atol=1e-12, rtol=0)
    assert torch.allclose(both[1:], ours(clip, other, text), atol=1e-12, rtol=0)


# ------------------------------------------------------------------------------------------ SFR


@pytest.mark.parametrize("grid", [(1, 1), (1, 6), (3, 3), (4, 9), (7, 5), (6, 8)])
def test_the_sfr_matrix_equals_the_official_one(grid):
    g = torch.Generator().manual_seed(grid[0] * 31 + grid[1])
    for classes in (2, 3, 5):
        labels = torch.randint(0, classes, grid, generator=g)
        for sigma in (5.0, 1.5):
            for delete in (True, False):
                expected = generate_attention_sfr(labels, grid, sigma, delete)[0]
                got = sfr_matrix(labels, sigma, delete, torch.float64)
                assert torch.allclose(got, expected, atol=1e-14, rtol=0), (grid, classes, sigma, delete)


def test_the_path_check_reads_only_a_prefix_of_short_segments():
    """m.py:137-142: pair (i, j) checks the points i + (k / S)(j - i), k <= s_ij, S the longest distance of
    the grid: on a 1x9 row (S = 8) the pair of columns 0 and 4 looks at columns 0, 0, 1, 2, 2 only."""
    labels = torch.tensor([[1, 1, 1, 0, 1, 1, 1, 1, 1]])
    valid, steps, longest = _straight_paths(labels)
    assert longest == 8 and steps[0, 4] == 4
    assert valid[0, 4]  # column 3 (label 0) lies between, unread
    assert not valid[0, 8]  # the whole segment is read: it crosses column 3
    assert valid[2, 4]  # columns 2, 2.25, 2.5 -> 2, 2, 2 (halves round to even)
    assert not valid[2, 5]  # columns 2, 2.375, 2.75, 3.125 -> 2, 2, 3, 3
    assert not valid[4, 0]  # the way back: 4, 3.5, 3, ... -> 4, 4, 3: not symmetric


def test_the_path_points_round_as_float32_does():
    """m.py:137-140 compute the points in float32: on a 5x7 grid (S = 6) the path from (3, 0) to (0, 6) has
    row 3 * (1 - 5/6) = 0.50000006 at k = 5, which rounds to 1 (exactly 0.5 would round to 0)."""
    labels = torch.ones(5, 7, dtype=torch.int64)
    labels[1, 5] = 0
    valid, _, _ = _straight_paths(labels)
    assert not valid[3 * 7 + 0, 0 * 7 + 6]
    expected = check_path(torch.tensor([[3, 0]]), torch.tensor([[0, 6]]), labels)
    assert not expected.item()
    labels[1, 5], labels[0, 5] = 1, 0
    assert _straight_paths(labels)[0][3 * 7 + 0, 0 * 7 + 6]  # (0, 5) is not on it


# ------------------------------------------------------------------------------------------ options


def test_options_are_validated():
    with pytest.raises(ValueError, match="no option"):
        build_method("resclip", {"tau": 2.0})
    for bad in ({"rcs_layers": []}, {"rcs_layers": [0, 1]}, {"rcs_layers": "6"}, {"tau_s": "2"},
                {"use_rcs": 1}, {"gaussian_std": 0}, {"first_pass_pamr_iterations": -1},
                {"first_pass_pamr_dilations": [0]}, {"temp_thd": None}, {"delete_same_entity": "yes"}):
        with pytest.raises(ValueError, match="ResCLIP option"):
            build_method("resclip", bad)
    with pytest.raises(ConfigError, match="method_options"):
        load_config("baseline_resclip", ["eval.method_options.rcs_layers=[]"])


def test_rcs_layers_are_checked_against_the_model(clip, window):
    image, text = window
    method = build_method("resclip")  # blocks 6-9: ViT-B/16's
    assert method.needs() == Needs(attentions=frozenset({6, 7, 8, 9}))
    assert build_method("resclip", {"use_rcs": False}).needs() == Needs()
    with torch.no_grad():
        trunk = clip.trunk(image, Needs(attentions=frozenset({1, 2, 3})))
        with pytest.raises(ValueError, match=r"rcs_layers \[6, 7, 8, 9\].*1\.\.3"):
            method.logits(clip, trunk, image, text, SIZE)
        with pytest.raises(ValueError, match="attention maps of blocks"):
            build_method("resclip", {"rcs_layers": [2]}).logits(clip, clip.trunk(image), image, text, SIZE)


# ------------------------------------------------------------------------------------------ presets

RESCLIP = "yvhangyang/ResCLIP@0e085f7"
EIGHT = ("voc21", "context60", "coco_object", "voc20", "context59", "coco_stuff171", "cityscapes", "ade20k")
# benchmark: (tau_r, lambda_r, tau_s, lambda_s, temp_thd, prob_thd, mode, short side, where)
OFFICIAL = {
    "voc21": (2.0, 0.3, 2.2, 0.7, 0.50, 0.1, "whole", 336, "configs/cfg_voc21.py:6-11, :20"),
    "context60": (2.0, 0.3, 1.8, 0.7, 0.30, 0.1, "slide", 336, "configs/cfg_context60.py:6-10, :19"),
    "coco_object": (2.0, 0.4, 1.8, 0.7, 0.11, 0.1, "slide", 336, "configs/cfg_coco_object.py:6-10, :19"),
    "voc20": (2.0, 0.6, 2.1, 0.6, 0.10, 0.0, "whole", 336, "configs/cfg_voc20.py:6-10, :19"),
    "context59": (2.0, 0.4, 1.8, 0.7, 0.25, 0.0, "slide", 336, "configs/cfg_context59.py:6-9, :18"),
    "coco_stuff171": (2.0, 0.4, 1.8, 0.7, 0.11, 0.0, "slide", 336, "configs/cfg_coco_stuff164k.py:6-9, :18"),
    "cityscapes": (2.0, 0.2, 2.1, 0.6, 0.10, 0.0, "slide", 560, "configs/cfg_city_scapes.py:6-9, :18"),
    "ade20k": (2.0, 0.3, 2.1, 0.7, 0.25, 0.0, "slide", 336, "configs/cfg_ade20k.py:6-9, :18"),
}
# Everywhere (resclip_segmentor.py:23-26 defaults; configs/base_config.py:5-6; m.py:279, 328; README
# test_all.sh ... resclip 5)
SHARED = {
    "names": "sclip", "templates": "imagenet80", "crop": 224, "stride": 112, "logit_scale": 40,
    "background": "softmax", "bg_area": None, "pamr_iterations": 0, "resize_backend": "cv2",
    "remainder": "drop", "precision": "fp16", "scales": [1.0], "flip": False, "resize": "short",
}
SHARED_OPTIONS = {
    "rcs_layers": [6, 7, 8, 9], "gaussian_std": 5.0, "delete_same_entity": True, "use_rcs": True,
    "use_sfr": True,
    "first_pass_pamr_iterations": 10, "first_pass_pamr_dilations": [8, 16], "first_pass_logit_scale": 40,
}


@pytest.mark.parametrize("bench", EIGHT)
def test_the_paper_preset_holds_the_official_values(bench):
    cfg = load_config("baseline_resclip", ["eval.preset=paper"])
    assert cfg.model.clip.pos_embed == "lineage"  # m.py:307-308, 377-394
    assert cfg.model.clip.last_block == "resclip" and cfg.eval.method == "ResCLIP"
    e = eval_for(cfg.eval, bench)
    tau_r, lambda_r, tau_s, lambda_s, temp_thd, prob_thd, mode, short, where = OFFICIAL[bench]
    where = f"{RESCLIP} {where}"
    got = {k: (list(e[k]) if k == "scales" else e[k]) for k in SHARED}
    assert got == SHARED, where
    assert (e.mode, e.short_side, e.bg_threshold) == (mode, short, prob_thd), where
    options = dict(e.method_options)
    expected = {**SHARED_OPTIONS, "tau_r": tau_r, "lambda_r": lambda_r, "tau_s": tau_s, "lambda_s": lambda_s,
                "temp_thd": temp_thd}
    plain = {k: (list(v) if k.endswith(("layers", "dilations")) else v) for k, v in options.items()}
    assert plain == expected, where
    assert build_method("resclip", options).options == {**ResCLIP.defaults, **expected}


def test_the_defaults_are_the_voc21_config():
    tau_r, lambda_r, tau_s, lambda_s, temp_thd = OFFICIAL["voc21"][:5]
    assert ResCLIP.defaults == {**SHARED_OPTIONS, "tau_r": tau_r, "lambda_r": lambda_r, "tau_s": tau_s,
                                "lambda_s": lambda_s, "temp_thd": temp_thd}


# ------------------------------------------------------------------------------------------ end to end


def test_eval_runs_resclip_end_to_end(world, tiny_clip_file, tmp_path):
    from lseg_pacl.commands.cli import main

    assert main(["eval", "baseline_resclip", "benchmarks=[synthetic]", f"data.val.roots.synthetic={world}",
                 "model.clip.name=lseg-tiny-vit", f"model.clip.pretrained={tiny_clip_file}",
                 "eval.short_side=48", "eval.crop=32", "eval.stride=16", "eval.max_images=2",
                 "eval.pictures=0", "data.num_workers=0", "logger.wandb.mode=disabled",
                 f"run.root={tmp_path}",
                 "eval.method_options.rcs_layers=[2,3]", "eval.method_options.temp_thd=0.2"]) == 0
    results = list(tmp_path.glob("baseline_resclip/eval-*/results.json"))
    assert len(results) == 1
    row = json.loads(results[0].read_text())["synthetic"]
    assert isinstance(row["mIoU"], float) and 0 <= row["mIoU"] <= 1 and row["images"] == 2
    assert row["settings"]["model"] == "clip: lseg-tiny-vit (resclip)"
    assert row["settings"]["method"] == "ResCLIP"
    options = row["settings"]["method_options"]
    assert options["rcs_layers"] == [2, 3] and options["temp_thd"] == 0.2 and options["use_sfr"] is True
