"""CLIPtrase against its official code (leaves162/CLIPtrase@2b7de61), transcribed below, in float64 with
random perturbed weights on a non-square window; its DBSCAN and median filter against scikit-learn's and
scipy's definitions; the `paper` preset against the official configuration; and the eval command end to end.

The official code runs square crops only; the transcription's one change for a non-square window is the last
resize of the cluster maps to the window's (H, W) instead of (image_size, image_size)
(clip_self_correlation.py:198-200), which is the same thing on a square crop. The official code hard-codes
blocks 11 and 12 (clip_utils/model.py:248-251) and reads block 11's weights as attn_weights[-2]
(clip_self_correlation.py:148-149); the transcription takes both blocks as arguments (the 4-block model's 3
and 4 by default) and reads the weights of the block passed. The patch size (16, :143) is the test model's 8.
"""

import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.ndimage import median_filter as scipy_median_filter
from support.models import perturbed_tiny_clip

from data_modules.classnames import ADE20K_150, COCO_OBJECT, COCO_STUFF171, CONTEXT59, PC459, VOC20
from data_modules.name_sets import NAME_SETS, NAMES_DIR
from lseg_pacl.config.loading import eval_for, load_config
from lseg_pacl.errors import ConfigError
from lseg_pacl.evaluation.labels import LabelSet, read_synonyms
from lseg_pacl.methods import build_method
from lseg_pacl.methods.cliptrase import (
    CLIPTrase,
    dbscan,
    median_filter,
    recalibrated,
    self_correlation,
    vote,
)
from lseg_pacl.models.clip import ClipBackbone

REPO = "leaves162/CLIPtrase@2b7de61"
MIRROR = Path("/work/.mirror/leaves162+CLIPtrase/repo")
H, W = 40, 56  # 5 x 7 patches of 8 pixels
OPTIONS = {"correlation_layer": 3, "eps": 0.55, "min_samples": 2}  # the 4-block model; DBSCAN fitted to it
BACKGROUND = 3  # texts 0..2 stand for the background line in the tests with a background


# ------------------------------------------------------------------ the official code, transcribed (float64)

def official_mha(x, attn, self_qk_weight=False, self_out_weight=False):
    """clip_utils/attn2.py multi_head_attention_forward on LND x (self-attention, no mask, no dropout)."""
    tgt_len, bsz, embed_dim = x.size()  # :111
    num_heads = attn.num_heads
    head_dim = embed_dim // num_heads  # :115
    scaling = float(head_dim) ** -0.5  # :117
    q, k, v = F.linear(x, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)  # :119-121
    q = q.contiguous().view(tgt_len, bsz * num_heads, head_dim).transpose(0, 1)  # :228
    k = k.contiguous().view(-1, bsz * num_heads, head_dim).transpose(0, 1)  # :230
    v = v.contiguous().view(-1, bsz * num_heads, head_dim).transpose(0, 1)  # :232
    src_len = k.size(1)

    def cosines():  # :279-290 and :296-308
        out = []
        for b in range(q.shape[0]):
            qq_cos = torch.cosine_similarity(q[b].unsqueeze(dim=1), q[b].unsqueeze(dim=0), dim=-1)
            kk_cos = torch.cosine_similarity(k[b].unsqueeze(dim=1), k[b].unsqueeze(dim=0), dim=-1)
            vv_cos = torch.cosine_similarity(v[b].unsqueeze(dim=1), v[b].unsqueeze(dim=0), dim=-1)
            out.append((qq_cos + kk_cos + vv_cos) / 3.0)
        return torch.stack(out, dim=0)

    if self_qk_weight:  # :254-290
        q_weight = torch.bmm(q * scaling, q.transpose(1, 2))
        k_weight = torch.bmm(k * scaling, k.transpose(1, 2))
        v_weight = torch.bmm(v * scaling, v.transpose(1, 2))
        attn_output_weights = (F.softmax(q_weight, dim=-1) + F.softmax(k_weight, dim=-1)
                               + F.softmax(v_weight, dim=-1))
        attn_output_weights_ori = cosines()
    else:  # :291-329
        attn_output_weights = torch.bmm(q * scaling, k.transpose(1, 2))
        attn_output_weights_ori = cosines() if self_out_weight else attn_output_weights.clone()
        attn_output_weights = F.softmax(attn_output_weights, dim=-1)
    attn_output = torch.bmm(attn_output_weights, v)  # :331
    attn_output = attn_output.transpose(0, 1).contiguous().view(tgt_len, bsz, embed_dim)  # :333
    attn_output = F.linear(attn_output, attn.out_proj.weight, attn.out_proj.bias)  # :334
    weights = attn_output_weights_ori.view(bsz, num_heads, tgt_len, src_len)  # :337-339
    return attn_output, weights.sum(dim=1) / num_heads  # :340


def official_block(block, x, self_qk_weight=False, self_out_weight=False):
    """clip_utils/model.py:186-195 (ResidualAttentionBlock.forward); ln and mlp are the test model's own."""
    x_i, attn = official_mha(block.ln_1(x), block.attn, self_qk_weight, self_out_weight)
    x = x + x_i
    x = x + block.mlp(block.ln_2(x))
    return x, attn


def official_positions(visual, x, w, h, patch_size):
    """clip_utils/model.py:291-309 (interpolate_pos_encoding)."""
    npatch = x.shape[1] - 1
    N = visual.positional_embedding.shape[0] - 1
    if npatch == N and w == h:
        return visual.positional_embedding
    class_pos_embed = visual.positional_embedding[[0]]
    patch_pos_embed = visual.positional_embedding[1:]
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


def official_encode_image(visual, x, patch_size, correlation_block, last_block):
    """clip_utils/model.py:230-261 (VisionTransformer.forward), blocks 11 and 12 passed in (1-based)."""
    B, nc, w, h = x.shape
    x = visual.conv1(x)
    x = x.reshape(x.shape[0], x.shape[1], -1)
    x = x.permute(0, 2, 1)
    x = torch.cat([visual.class_embedding.to(x.dtype)
                   + torch.zeros(x.shape[0], 1, x.shape[-1], dtype=x.dtype, device=x.device), x], dim=1)
    if x.shape[1] != visual.positional_embedding.shape[0]:
        x = x + official_positions(visual, x, w, h, patch_size).to(x.dtype)
    else:
        x = x + visual.positional_embedding.to(x.dtype)
    x = visual.ln_pre(x)
    x = x.permute(1, 0, 2)
    attn_weights = []
    for idx, blk in enumerate(visual.transformer.resblocks, start=1):
        if idx == correlation_block:
            x, attn_i = official_block(blk, x, self_out_weight=True)
        elif idx == last_block:
            x, attn_i = official_block(blk, x, self_qk_weight=True)
        else:
            x, attn_i = official_block(blk, x)
        attn_weights.append(attn_i)
    x = x.permute(1, 0, 2)
    x = visual.ln_post(x)
    x = x @ visual.proj
    return x, torch.stack(attn_weights, dim=0)


def sklearn_dbscan(X, eps, min_samples):
    """scikit-learn DBSCAN(eps, min_samples).fit_predict(X): sklearn/cluster/_dbscan.py DBSCAN.fit
    (radius_neighbors within eps, the point itself included; core = n_neighbors >= min_samples) and
    _dbscan_inner.pyx dbscan_inner (depth-first labelling from each unlabelled core point in index order)."""
    d = np.sqrt(((X[:, None, :] - X[None, :, :]) ** 2).sum(-1))
    neighborhoods = [np.where(row <= eps)[0] for row in d]
    is_core = np.array([len(nb) >= min_samples for nb in neighborhoods])
    labels = np.full(X.shape[0], -1, dtype=np.intp)
    label_num = 0
    stack = []
    for i in range(labels.shape[0]):
        if labels[i] != -1 or not is_core[i]:
            continue
        while True:
            if labels[i] == -1:
                labels[i] = label_num
                if is_core[i]:
                    for v in neighborhoods[i]:
                        if labels[v] == -1:
                            stack.append(v)
            if len(stack) == 0:
                break
            i = stack.pop()
        label_num += 1
    return labels


def official_self_clip(clip, images, text_features, C, patch_window, eps, min, *, with_bg=False,
                       voc20=False, ratio=4, correlation_block=3, last_block=4, recalibrate=True):
    """clip_self_correlation.py:143-216 on one normalised window: patch_preds [H, W] (the prediction), the
    patch logits [C, H, W] and the recalibrated correlation. ``text_features``: the C class texts, then any
    background texts; logit_scale.exp() is OpenAI CLIP's 100 (the random test model has another).
    ``recalibrate=False`` drops :151-152 (the ablation the option reproduces)."""
    image_size = images.shape[-2:]  # (image_size, image_size) in the official square crops
    ori_h, ori_w = images.shape[-2:]
    h, w = images.shape[-2] // patch_window, images.shape[-1] // patch_window
    visual_features, attn_weights = official_encode_image(clip.model.visual, images.unsqueeze(0),
                                                          patch_window, correlation_block, last_block)
    visual_features = visual_features / visual_features.norm(dim=-1, keepdim=True)  # :106
    cls_token = visual_features[0, 0:1]
    patch_tokens = visual_features[0, 1:]
    cls_weights = attn_weights[correlation_block - 1, 0, 0:1, 1:]  # [-2]: block 11
    attn_weights = attn_weights[correlation_block - 1, 0, 1:, 1:]
    if recalibrate:
        attn_weights = attn_weights - cls_weights
        attn_weights[attn_weights < 0] = 0
    patch_logits = patch_tokens @ text_features.T * 100.0
    patch_logits = patch_logits.permute(1, 0).unsqueeze(0).reshape(1, text_features.shape[0], h, w)
    patch_logits = F.interpolate(patch_logits, size=(ori_h, ori_w), mode="bilinear", align_corners=False)[0]
    if voc20:
        cls_logits = cls_token @ text_features.T * 100.0
        patch_logits = patch_logits * cls_logits[0].unsqueeze(1).unsqueeze(1)
    patch_preds = patch_logits.argmax(dim=0)
    if with_bg:
        patch_preds[patch_preds >= C] = C
    labels = torch.from_numpy(sklearn_dbscan(attn_weights.detach().cpu().numpy(), eps, min))  # :168-170
    db_label_set = torch.unique(labels)
    if db_label_set.shape[0] == 1 and db_label_set[0] == -1:
        return patch_preds, patch_logits, attn_weights, 0
    if db_label_set[0] == -1:
        db_label_set = db_label_set[1:]
    cluster_gts = []
    for lab in range(db_label_set.shape[0]):
        temp_attn = attn_weights[labels == db_label_set[lab]]
        temp_attn = temp_attn.mean(dim=0)
        cluster_gts.append(temp_attn)
    cluster_gts = torch.stack(cluster_gts, dim=0)
    cluster_gts = cluster_gts.reshape(cluster_gts.shape[0], h, w)
    cluster_gts = F.interpolate(cluster_gts.unsqueeze(0), size=(ratio * h, ratio * w), mode="bilinear",
                                align_corners=False)[0]
    cluster_gts = cluster_gts.detach().cpu().numpy()
    for i in range(cluster_gts.shape[0]):
        cluster_gts[i] = scipy_median_filter(cluster_gts[i], size=ratio * 2 - 1)
    cluster_gts = torch.from_numpy(cluster_gts)
    cluster_gts = F.interpolate(cluster_gts.unsqueeze(0), size=tuple(image_size), mode="bilinear",
                                align_corners=False)[0]
    cluster_gts = cluster_gts.argmax(dim=0)
    for gt in range(db_label_set.shape[0]):  # :203-210
        mask_preds = patch_preds[cluster_gts == db_label_set[gt]]
        unique_val, counts = torch.unique(mask_preds, return_counts=True)
        if counts.shape[0] == 0:
            continue
        pred_label = unique_val[counts.argmax()]
        patch_preds[cluster_gts == db_label_set[gt]] = pred_label
    if with_bg:
        patch_preds[patch_preds >= C] = C
    return patch_preds, patch_logits, attn_weights, int(db_label_set.shape[0])


# ------------------------------------------------------------------------------------------------ fixtures

@pytest.fixture(scope="module")
def clip():
    model = perturbed_tiny_clip()
    return model


@pytest.fixture(scope="module")
def window():
    g = torch.Generator().manual_seed(2)
    image = torch.randn(1, 3, H, W, generator=g, dtype=torch.float64)
    text = F.normalize(torch.randn(9, 128, generator=g, dtype=torch.float64), dim=-1)
    return image, text


def ours(clip, image, text, **options):
    method = build_method("cliptrase", {**OPTIONS, **options})
    with torch.no_grad():
        trunk = clip.trunk(image, method.needs())
        return method.logits(clip, trunk, image, text, (image.shape[-2], image.shape[-1]))


def official(clip, image, text, background=0, **kw):
    """The official prediction with our text order (background texts first) put in the official one (classes,
    then background texts), mapped back to our class ids (background: 0, class c: c + 1)."""
    kw = {"eps": OPTIONS["eps"], "min": OPTIONS["min_samples"], **kw}
    order = torch.cat([text[background:], text[:background]])
    with torch.no_grad():
        preds, logits, corr, clusters = official_self_clip(clip, image[0], order, text.shape[0] - background,
                                                           8, with_bg=background > 0, **kw)
    if background:
        preds = torch.where(preds == text.shape[0] - background, 0, preds + 1)
    return preds, logits, corr, clusters


def classes(logits, background=0):
    """Our prediction as class ids (the background texts one class, 0)."""
    top = logits[0].argmax(0)
    return torch.where(top < background, 0, top - background + 1) if background else top


# ---------------------------------------------------------------------------------------------- fidelity

def test_correlation_and_recalibration_equal_the_official(clip, window):
    """attn2.py:295-308, :336-340 (head mean of the three cosine maps, block 11 here 3); :148-152."""
    image, text = window
    _, _, expected, _ = official(clip, image, text)
    with torch.no_grad():
        trunk = clip.trunk(image, build_method("cliptrase", OPTIONS).needs())
        got = recalibrated(self_correlation(clip.model.visual.transformer.resblocks[2], trunk.outputs[2]))
    assert got.dtype == torch.float64 and got.shape == (1, 35, 35)
    assert torch.allclose(got[0], expected, atol=1e-12, rtol=0)
    assert (expected == 0).any() and (expected > 0).any()  # the clamp acts


def test_without_clustering_the_cosines_are_the_official_logits_over_100(clip, window):
    """clip_self_correlation.py:154-158 with the correlative last block (attn2.py:254-277, m.py:191-195)."""
    image, text = window
    preds, expected, _, _ = official(clip, image, text, eps=1e-9)  # no cluster: the argmax stays
    got = ours(clip, image, text, clustering=False)
    assert got.dtype == torch.float64 and got.shape == (1, 9, H, W)
    assert torch.allclose(100 * got[0], expected, atol=1e-10, rtol=0)
    assert torch.equal(classes(got), preds)


def test_cls_token_scaling_is_the_official_voc20_product(clip, window):
    """clip_self_correlation.py:159-161: (100 cos_patch) x (100 cos_cls) = 1e4 x what the option returns."""
    image, text = window
    preds, expected, _, _ = official(clip, image, text, eps=1e-9, voc20=True)
    got = ours(clip, image, text, clustering=False, cls_token_scaling=True)
    assert torch.allclose(1e4 * got[0], expected, atol=1e-8, rtol=0)
    assert torch.equal(classes(got), preds)
    assert not torch.equal(preds, official(clip, image, text, eps=1e-9)[0])  # the scaling changes labels


@pytest.mark.parametrize("options", [{}, {"min_samples": 3, "eps": 0.65}, {"smooth_ratio": 2},
                                     {"cls_token_scaling": True}, {"recalibrate": False, "eps": 0.65}])
def test_clustering_gives_the_official_prediction(clip, window, options):
    """clip_self_correlation.py:168-210: DBSCAN, cluster maps smoothed, the vote."""
    image, text = window
    given = {**OPTIONS, **options}
    kw = {"eps": given["eps"], "min": given["min_samples"],
          "ratio": options.get("smooth_ratio", 4), "voc20": options.get("cls_token_scaling", False),
          "recalibrate": options.get("recalibrate", True)}
    expected, _, _, clusters = official(clip, image, text, **kw)
    plain, _, _, _ = official(clip, image, text, **{**kw, "eps": 1e-9})
    got = ours(clip, image, text, **options)
    assert torch.equal(classes(got), expected)
    assert clusters >= 2 and not torch.equal(expected, plain)  # a real clustering that changes the labels


def test_background_texts_vote_as_one_class_ranked_last(clip, window):
    """clip_self_correlation.py:164-166, :212-214: the background texts collapse to one class before the vote.
    Three background texts near the text most pixels prefer split those pixels' votes: counted per text, the
    vote gives another prediction."""
    image, text = window
    noise = torch.randn(BACKGROUND, 128, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    text = torch.cat([F.normalize(text[5] + noise / 128**0.5, dim=-1), text[3:5], text[:1], text[6:]])
    expected, _, _, _ = official(clip, image, text, background=BACKGROUND)
    got = ours(clip, image, text, background_texts=BACKGROUND)
    assert torch.equal(classes(got, BACKGROUND), expected)
    assert not torch.equal(classes(ours(clip, image, text), BACKGROUND), expected)
    labels = LabelSet.of([["sky", "wall", "tree"], *[[f"c{i}"] for i in range(6)]], background_index=0,
                         rule="softmax", scale=100, threshold=0.0)
    assert torch.equal(labels.predict(got)[0], expected)  # the protocol's softmax rule reads them alike


@pytest.mark.parametrize("layer", [2, 3])
def test_correlation_layer_picks_the_block_read(clip, window, layer):
    """m.py:248-249 (idx == 11): here any block before the last, its input read from the trunk."""
    image, text = window
    expected, _, _, clusters = official(clip, image, text, correlation_block=layer, eps=0.65)
    method = build_method("cliptrase", {**OPTIONS, "correlation_layer": layer, "eps": 0.65})
    assert method.needs().outputs == {layer - 1}
    assert torch.equal(classes(ours(clip, image, text, correlation_layer=layer, eps=0.65)), expected)
    assert clusters >= 2


def test_each_cluster_takes_the_mean_logits_of_its_winning_pixels():
    """The logits that express the vote: one vector per region, the mean over the pixels that predicted the
    region's label (torch.unique + counts.argmax, clip_self_correlation.py:204-208); a background win gives
    its texts the mean of those pixels' largest background logit."""
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(5, 6, 8, generator=g, dtype=torch.float64)
    regions = torch.zeros(6, 8, dtype=torch.long)
    regions[:, 4:] = 1
    regions[3:, :2] = 2
    for nb in (0, 2):
        out = vote(logits, regions, nb)
        top = logits.argmax(0)
        label = torch.where(top < nb, 5, top) if nb else top  # official: background texts -> C, after classes
        winners = []
        for c in range(3):
            inside = regions == c
            values, counts = torch.unique(label[inside], return_counts=True)
            winner = values[counts.argmax()]
            winners.append(int(winner))
            voters = inside & (label == winner)
            rep = logits[:, voters].mean(1)
            if nb and winner == 5:
                rep[:nb] = logits[:nb, voters].amax(0).mean()
            assert torch.allclose(out[:, inside], rep[:, None].expand(-1, int(inside.sum())), atol=1e-12)
            first = int(out[:, inside][:, 0].argmax())
            assert first < nb if winner == 5 else first == winner
        assert len(set(winners)) > 1 and (nb == 0 or 5 in winners), winners


def test_no_cluster_leaves_the_cosines(clip, window):
    """clip_self_correlation.py:172-177."""
    image, text = window
    assert torch.equal(ours(clip, image, text, eps=1e-9), ours(clip, image, text, clustering=False))


def test_windows_of_a_batch_are_clustered_each_alone(clip, window):
    image, text = window
    pair = torch.cat([image, image.flip(-1)])
    both = ours(clip, pair, text)
    assert torch.allclose(both[0], ours(clip, image, text)[0], atol=1e-12, rtol=0)
    assert torch.allclose(both[1], ours(clip, image.flip(-1), text)[0], atol=1e-12, rtol=0)


def test_correlation_ignores_autocast_and_the_logits_stay_wide(clip, window):
    """The official code runs fp32 (m.py:499): under bf16 autocast the correlation that DBSCAN reads is still
    computed in float32, from the same trunk exactly as without autocast."""
    image, text = window
    model = ClipBackbone("lseg-tiny-vit", None, pos_embed="lineage").eval()
    model.load_state_dict({k: v.float() for k, v in clip.state_dict().items()})
    block = model.model.visual.transformer.resblocks[2]
    method = build_method("cliptrase", OPTIONS)
    with torch.no_grad():
        trunk = model.trunk(image.float(), method.needs())
        plain = self_correlation(block, trunk.outputs[2])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = self_correlation(block, trunk.outputs[2])
            logits = method.logits(model, trunk, image.float(), text.float(), (H, W))
    assert mixed.dtype == torch.float32 and torch.equal(mixed, plain)
    assert logits.dtype == torch.float32 and logits.shape == (1, 9, H, W) and torch.isfinite(logits).all()


def test_dbscan_equals_scikit_learn_s():
    g = np.random.default_rng(4)
    for trial in range(20):
        centres = g.normal(size=(4, 3)) * 3
        blobs = [c + g.normal(size=(12, 3)) * 0.6 for c in centres]
        points = np.concatenate([*blobs, g.normal(size=(6, 3)) * 5])[g.permutation(54)]
        for eps, min_samples in ((0.8, 3), (1.0, 5), (0.5, 2), (1.5, 1)):
            expected = sklearn_dbscan(points, eps, min_samples)
            got = dbscan(torch.from_numpy(points), eps, min_samples).numpy()
            assert np.array_equal(got, expected), (trial, eps, min_samples)
    # 2.0 is a border point of both clusters (0..1 and 3..4): it joins the first-numbered one, the cluster of
    # the lowest core index (here 3..4, listed first); 0.0 is a border point, 9.0 noise
    points = np.array([[3.0], [3.5], [4.0], [0.0], [0.5], [1.0], [2.0], [9.0]])
    labels = dbscan(torch.from_numpy(points), 1.0, 4).tolist()
    assert labels == sklearn_dbscan(points, 1.0, 4).tolist() == [0, 0, 0, 1, 1, 1, 0, -1]


def test_median_filter_equals_scipy_s():
    g = torch.Generator().manual_seed(5)
    for shape, size in (((3, 20, 28), 7), ((2, 4, 9), 7), ((1, 5, 5), 3), ((2, 8, 6), 5)):
        maps = torch.randn(*shape, generator=g, dtype=torch.float64)
        got = median_filter(maps, size)
        expected = np.stack([scipy_median_filter(m, size=size) for m in maps.numpy()])
        assert np.array_equal(got.numpy(), expected), (shape, size)


def test_options_are_checked():
    assert CLIPTrase.defaults == {"correlation_layer": 11, "recalibrate": True, "clustering": True,
                                  "eps": 0.7, "min_samples": 3, "smooth_ratio": 4, "cls_token_scaling": False,
                                  "background_texts": 0}
    for bad in ({"eps": 0}, {"eps": True}, {"min_samples": 0}, {"min_samples": 2.5}, {"smooth_ratio": 0},
                {"correlation_layer": 1}, {"background_texts": -1}, {"clustering": "yes"},
                {"cls_token_scaling": 1}, {"recalibrate": None}):
        with pytest.raises(ValueError, match="CLIPTrase options"):
            build_method("cliptrase", bad)
    with pytest.raises(ValueError, match="no option"):
        build_method("cliptrase", {"logit_scale": 100})
    with pytest.raises(ConfigError, match="method_options"):
        load_config("baseline_cliptrase", ["eval.method_options.eps=-1"])


def test_layers_and_texts_are_checked_against_the_model(clip, window):
    image, text = window
    with pytest.raises(ValueError, match=r"asked for blocks \[10\]; the trunk has 1\.\.3"):  # ViT-B/16's 11
        ours(clip, image, text, correlation_layer=11)
    trunk = clip.trunk(image)
    for layer in (11, 4):
        with pytest.raises(ValueError, match=rf"correlation_layer={layer} must name a block before the last, "
                                             r"2\.\.3 for this 4-block CLIP"):
            build_method("cliptrase", {"correlation_layer": layer}).logits(clip, trunk, image, text, (H, W))
    with pytest.raises(ValueError, match="background_texts=10 exceeds the 9 texts"):
        ours(clip, image, text, background_texts=10)


# ------------------------------------------------------------------------------- the `paper` preset, names

def official_config():
    """configs/dataset_cfg.py at the official commit: dataset_info (labels, background lists)."""
    source = subprocess.run(["git", "-C", str(MIRROR), "show", "2b7de61:configs/dataset_cfg.py"],
                            capture_output=True, text=True, check=True).stdout
    namespace: dict = {}
    exec(source, namespace)  # noqa: S102 - the official file is plain data
    return namespace["dataset_info"]


# our benchmark -> (the official dataset key, background texts)
OFFICIAL_SETS = {"voc21": ("VOC21", 33), "context60": ("PC60", 1), "coco_object": ("COCO80_val", 107),
                 "voc20": ("VOC20", 0), "context59": ("PC59", 0), "pc459": ("PC459", 0)}
BENCHMARKS = ("voc21", "context60", "coco_object", "voc20", "context59", "coco_stuff171", "cityscapes",
              "ade20k", "ade847", "pc459")

# benchmark -> (value, where) of what differs per benchmark in the official code
PAPER = {
    # clip_self_correlation.py:159-161 (dataset == 'VOC20')
    "cls_token_scaling": {"voc20": True},
    # clip_self_correlation.py:115-120, :164-166: configs/dataset_cfg.py:53 VOC21 (33 texts: 'beach' 'hill'
    # concatenate), :37 PC60 ('background'), :16 COCO80_val (107)
    "background_texts": {"voc21": 33, "context60": 1, "coco_object": 107},
}
SHARED = {  # every benchmark: key -> (value, the official line)
    "mode": ("centre", "clip_self_correlation.py:38-56 Resize(n) + CenterCrop(n), GT alike"),
    "short_side": (224, "clip_self_correlation.py:233 image_size=224 (the README's first table)"),
    "templates": ("imagenet80", "configs/dataset_cfg.py:57-138 (the same 80 templates, same order)"),
    "names": ("cliptrase", "configs/dataset_cfg.py dataset_info labels / background"),
    "background": ("softmax", "clip_self_correlation.py:162-166 argmax over classes + background texts"),
    "bg_threshold": (0.0, "no probability threshold"),
    "bg_area": (None, "no area rule"),
    "logit_scale": (100.0, "clip_self_correlation.py:154 clip.logit_scale.exp()"),
    "pamr_iterations": (0, "README: no post-processing"),
    "precision": ("fp32", "clip_utils/model.py:499 convert_weights commented out"),
    "scales": ([1.0], "one view"),
    "flip": (False, "one view"),
    "remainder": ("drop", "conv1 stride 16 (224, 336 divide by 16)"),
}
METHOD = {"correlation_layer": (11, "clip_utils/model.py:248"), "recalibrate": (True, ":151-152"),
          "clustering": (True, ":167-210"), "eps": (0.7, ":233"), "min_samples": (3, ":233"),
          "smooth_ratio": (4, ":189")}


def test_paper_preset_holds_the_official_values():
    cfg = load_config("baseline_cliptrase", ["eval.preset=paper"])
    assert cfg.model.clip.last_block == "cliptrase" and cfg.eval.method == "CLIPtrase"
    assert cfg.model.clip.pos_embed == "lineage"  # clip_utils/model.py:238-241, :291-309
    for bench in BENCHMARKS:
        e = eval_for(cfg.eval, bench)
        for key, (value, where) in SHARED.items():
            got = list(e[key]) if key == "scales" else e[key]
            assert got == value, f"{bench} {key}: {where}"
        options = build_method("cliptrase", dict(e.method_options)).options
        for key, (value, where) in METHOD.items():
            assert options[key] == value, f"{bench} {key}: {where}"
        for key, per in PAPER.items():
            assert options[key] == per.get(bench, CLIPTrase.defaults[key]), f"{bench} {key}"


def test_the_shipped_names_are_the_official_lists():
    """configs/dataset_cfg.py: each file holds the official labels in the benchmark's order, its background
    list first where there is one; benchmarks whose official list equals the default have no file."""
    info = official_config()
    for bench, (key, nb) in OFFICIAL_SETS.items():
        names = read_synonyms(NAMES_DIR / "cliptrase" / f"{bench}.txt", len(info[key]["labels"]) + (nb > 0),
                              NAME_SETS["cliptrase"].separator)
        background = tuple(info[key].get("background", ()))
        assert len(background) == nb
        if nb:
            assert names[0] == background
        assert [n for (n,) in names[1 if nb else 0:]] == info[key]["labels"], bench
    same = {"coco_stuff171": ("COCO171_val", COCO_STUFF171),
            "ade847": ("ADEfull", tuple(json.loads((NAMES_DIR.parent / "ade847.json").read_text())))}
    for bench, (key, default) in same.items():
        assert tuple(info[key]["labels"]) == default
        assert not (NAMES_DIR / "cliptrase" / f"{bench}.txt").exists()
    ade = [n.strip() for n in info["ADE150"]["labels"]]  # "bed " tokenises as "bed"
    assert tuple(ade) == ADE20K_150 and not (NAMES_DIR / "cliptrase" / "ade20k.txt").exists()
    assert VOC20[-1] == "tvmonitor" and info["VOC20"]["labels"][-1] == "tv"  # why voc20 has a file
    assert CONTEXT59[49] == "table" and info["PC59"]["labels"][49] == "diningtable"
    assert COCO_OBJECT[1:] == tuple(info["COCO80_val"]["labels"]) and len(PC459) == 459


# ------------------------------------------------------------------------------------------- end to end

@pytest.mark.slow
def test_eval_runs_cliptrase_end_to_end(world, tiny_clip_file, tmp_path, monkeypatch):
    from lseg_pacl.commands.cli import main
    from lseg_pacl.methods import cliptrase

    found = []  # how many windows DBSCAN found clusters in

    def spy(*args, **kwargs):
        regions = cluster_regions(*args, **kwargs)
        found.append(regions is not None)
        return regions

    cluster_regions = cliptrase.cluster_regions
    monkeypatch.setattr(cliptrase, "cluster_regions", spy)
    assert main(["eval", "baseline_cliptrase", "benchmarks=[synthetic]", f"data.val.roots.synthetic={world}",
                 "model.clip.name=lseg-tiny-vit", f"model.clip.pretrained={tiny_clip_file}",
                 "eval.short_side=48", "eval.crop=32", "eval.stride=16", "eval.max_images=2",
                 "eval.pictures=0", "data.num_workers=0", "logger.wandb.mode=disabled",
                 f"run.root={tmp_path}", "eval.method_options.correlation_layer=3",
                 "eval.method_options.eps=0.3"]) == 0
    (out,) = (tmp_path / "baseline_cliptrase").glob("eval-*")
    result = json.loads((out / "results.json").read_text())["synthetic"]
    assert isinstance(result["mIoU"], float) and 0 <= result["mIoU"] <= 1 and result["images"] == 2
    assert "cliptrase" in result["settings"]["model"] and result["settings"]["method"] == "CLIPtrase"
    assert result["settings"]["method_options"]["correlation_layer"] == 3
    assert len(found) == 2 * 4 and any(found)  # 2 images x 4 windows of 32 in 48 x 48, some clustered
