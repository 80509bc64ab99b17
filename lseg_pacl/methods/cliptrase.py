"""CLIPtrase (Shao et al., ECCV'24): CLIP's patches correlate with a few "global" patches that carry the CLS
token's image-level meaning, which drowns local detail. CLIPtrase reads the patch self-correlation of the
block before the last, removes what every patch shares with the CLS token (recalibration), groups the patches
by their recalibrated correlation (DBSCAN) and lets every group take the label most of its pixels get from a
correlative last block.

Official code: leaves162/CLIPtrase@2b7de61 (``clip_self_correlation.py``; ``clip_utils/attn2.py``;
``clip_utils/model.py`` = m.py):
- block 11 (``correlation_layer``) runs unchanged but returns Ā = head mean of (cos QQ + cos KK + cos VV) / 3
  over all tokens (m.py:248-249, attn2.py:295-308, :336-340);
- block 12 (the last) attends with softmax(QQᵀ/√d) + softmax(KKᵀ/√d) + softmax(VVᵀ/√d), residual and FFN kept
  (m.py:191-195, :250-251, attn2.py:254-277, :331-334); ln_post, proj, unit norm (m.py:257-259,
  clip_self_correlation.py:103-107);
- recalibration A′ = Ā[patches, patches] − Ā[CLS, patches], negatives to 0 (clip_self_correlation.py:146-152);
- logits: 100 · cosine at the patches, bilinear to the image; VOC20 only: times the CLS token's logits
  (``cls_token_scaling``, :154-161); prediction = argmax, background texts collapsed to one class (:162-166);
- DBSCAN (eps 0.7 / min 3 at 224 px, 1.1 / 7 at 336 px; :168-169, :233-234) on the rows of A′; no cluster:
  the argmax stays (:171-177); else each cluster's mean row as a map, bilinear × ``smooth_ratio`` (4), median
  filter of side 2·ratio − 1 (7, scipy's reflect borders), bilinear to the image, argmax over clusters
  (:180-201); every cluster's pixels take the most frequent prediction among them, the smallest label on a
  tie (:202-210).

How it is expressed here, and where it deliberately differs:
- ``logits`` must return per-text cosines, so each pixel's cosines are replaced by its cluster's
  representative: the mean cosines of the cluster's pixels that predicted the winning label (for a winning
  group of background texts, its texts all take the mean of those pixels' largest background cosine). Every
  such pixel has the winner as its argmax, so the mean does too: the argmax is the official prediction.
- The official vote counts classes after collapsing the background texts to one class ranked last; ``logits``
  sees texts only, so ``background_texts: n`` makes the first n texts (the background line of a name file)
  one label, ranked after the others on a tie, as there. The ``paper`` preset sets it per benchmark.
- No logit scale: the prediction is an argmax, and 100·cos_patch × 100·cos_cls has the argmax of
  cos_patch × cos_cls, which is what ``cls_token_scaling`` returns. The protocol's ``logit_scale`` only feeds
  its own softmax.
- The official code hard-codes blocks 11 and 12 (m.py:248-251), the last two of ViT-B/16 only; here the last
  block is always the correlative one and ``correlation_layer`` (2..L-1) names the block read.
- The official final resize goes to (image_size, image_size) (:198-200), its crops being square; here to the
  window's size, so non-square windows (``unified``'s slide protocol) work.
- DBSCAN and the median filter are implemented here (no scikit-learn): sklearn's DBSCAN (Euclidean,
  neighbours within eps inclusive of the point itself, clusters numbered by their first core point, a border
  point joining the lowest-numbered cluster that reaches it) and scipy.ndimage.median_filter's 'reflect'
  border, both checked against those definitions by the tests.
- The official code runs fp32 even on CUDA (m.py:499 leaves ``convert_weights`` commented out): the ``paper``
  preset sets precision fp32; whatever the precision, the correlations and the clustering run with autocast
  off in at least float32 (float64 stays float64).
"""

from __future__ import annotations

import numbers
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from lseg_pacl.methods.base import TrainingFreeMethod
from lseg_pacl.models.clip import ClipBackbone
from lseg_pacl.models.trunk import Needs, Trunk
from lseg_pacl.models.zeroshot import zero_shot_logits


def _wide(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.promote_types(t.dtype, torch.float32))


def _qkv(block: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, k, v [B, heads, N, head_dim] of an open_clip block's attention on ln_1(x), x batch first."""
    attn = block.attn
    b, n, width = x.shape
    qkv = F.linear(block.ln_1(x), attn.in_proj_weight, attn.in_proj_bias)
    qkv = qkv.reshape(b, n, 3, attn.num_heads, width // attn.num_heads).permute(2, 0, 3, 1, 4)
    return qkv[0], qkv[1], qkv[2]


def self_correlation(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Ā [B, N, N]: the head mean of (cos QQ + cos KK + cos VV) / 3 of ``block`` on its input x [B, N, width]
    (attn2.py:295-308, :336-340), in at least float32."""
    with torch.autocast(device_type=x.device.type, enabled=False):
        total = 0
        for t in _qkv(block, _wide(x)):
            u = F.normalize(t, dim=-1, eps=1e-8)
            total = total + u @ u.transpose(-2, -1)
        return (total / 3.0).mean(1)


def recalibrated(correlation: torch.Tensor) -> torch.Tensor:
    """A′ [B, T, T]: the patch rows minus the CLS row, negatives to 0 (clip_self_correlation.py:148-152)."""
    return (correlation[:, 1:, 1:] - correlation[:, :1, 1:]).clamp_min(0)


def correlative_block(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The last block attending with softmax(QQᵀ/√d) + softmax(KKᵀ/√d) + softmax(VVᵀ/√d), residual and FFN
    kept (attn2.py:254-277, :331-334; m.py:191-195)."""
    q, k, v = _qkv(block, x)
    scale = q.shape[-1] ** -0.5
    attn = sum(
        (t @ t.transpose(-2, -1) * scale).softmax(-1, dtype=torch.promote_types(t.dtype, torch.float32))
        for t in (q, k, v)
    )
    b, h, n, d = v.shape
    y = block.attn.out_proj((attn.to(v.dtype) @ v).transpose(1, 2).reshape(b, n, h * d))
    x = x + block.ls_1(y)
    return x + block.ls_2(block.mlp(block.ln_2(x)))


def dbscan(points: torch.Tensor, eps: float, min_samples: int) -> torch.Tensor:
    """sklearn's DBSCAN(eps, min_samples) labels [n] (-1: noise) of the rows of ``points`` [n, f]: Euclidean
    neighbours within eps (the point itself included), core points with at least min_samples of them, clusters
    = connected core points numbered by their first core point, a border point in the lowest-numbered cluster
    with a core neighbour (sklearn's depth-first labelling, cluster by cluster, gives exactly this)."""
    n = points.shape[0]
    near = torch.cdist(points[None], points[None], compute_mode="donot_use_mm_for_euclid_dist")[0] <= eps
    core = near.sum(1) >= min_samples
    index = torch.arange(n, device=points.device)
    link = near & core[:, None] & core[None, :]
    root = torch.where(core, index, n)
    while True:  # every core point takes the smallest index of its component
        new = torch.where(core, torch.where(link, root[None, :], n).amin(1), n)
        if torch.equal(new, root):
            break
        root = new
    labels = torch.full((n,), -1, dtype=torch.long, device=points.device)
    labels[core] = torch.searchsorted(torch.unique(root[core]), root[core])
    reach = torch.where(near & core[None, :], labels[None, :], n).amin(1)
    return torch.where(~core & (reach < n), reach, labels)


def _reflected(length: int, pad: int, device: torch.device) -> torch.Tensor:
    """Indices of a side padded by ``pad`` with scipy's 'reflect' rule (d c b a | a b c d | d c b a)."""
    i = torch.arange(-pad, length + pad, device=device) % (2 * length)
    return torch.where(i < length, i, 2 * length - 1 - i)


def median_filter(maps: torch.Tensor, size: int) -> torch.Tensor:
    """scipy.ndimage.median_filter(map, size) of each map [n, H, W] (odd size, 'reflect' borders)."""
    pad = size // 2
    h, w = maps.shape[-2:]
    rows, cols = _reflected(h, pad, maps.device), _reflected(w, pad, maps.device)
    padded = maps[:, rows][:, :, cols]
    windows = padded.unfold(1, size, 1).unfold(2, size, 1)
    return windows.reshape(*maps.shape, size * size).median(-1).values


def cluster_regions(correlation: torch.Tensor, grid: tuple[int, int], size: tuple[int, int], eps: float,
                    min_samples: int, ratio: int) -> torch.Tensor | None:
    """Each pixel's cluster [*size] from one window's A′ [T, T], or None when DBSCAN finds no cluster
    (clip_self_correlation.py:168-201)."""
    labels = dbscan(correlation, eps, min_samples)
    count = int(labels.max()) + 1
    if count == 0:
        return None
    members = (labels[None, :] == torch.arange(count, device=labels.device)[:, None]).to(correlation.dtype)
    maps = (members @ correlation / members.sum(1, keepdim=True)).reshape(1, count, *grid)
    maps = F.interpolate(maps, size=(ratio * grid[0], ratio * grid[1]), mode="bilinear", align_corners=False)
    maps = median_filter(maps[0], 2 * ratio - 1)
    return F.interpolate(maps[None], size=size, mode="bilinear", align_corners=False)[0].argmax(0)


def vote(logits: torch.Tensor, regions: torch.Tensor, background_texts: int = 0) -> torch.Tensor:
    """One window's per-text logits [T, H, W] with every region's pixels given its representative: the mean
    logits of the region's pixels whose argmax carries the region's most frequent label (the smallest label
    on a tie; clip_self_correlation.py:202-210). The first ``background_texts`` texts are one label, ranked
    last; where it wins, its texts take the mean of those pixels' largest background logit."""
    texts = logits.shape[0]
    flat = logits.reshape(texts, -1)
    region = regions.reshape(-1)
    top = flat.argmax(0)
    nb = background_texts
    label = torch.where(top < nb, texts - nb, top - nb) if nb else top
    kinds = texts - nb + (1 if nb else 0)
    count = int(region.max()) + 1
    counts = torch.bincount(region * kinds + label, minlength=count * kinds).reshape(count, kinds)
    winner = counts.argmax(1)  # the first of equal counts: the smallest label
    voters = label == winner[region]
    mean = torch.zeros(count, texts, dtype=flat.dtype, device=flat.device)
    mean.index_add_(0, region[voters], flat[:, voters].t())
    votes = torch.bincount(region[voters], minlength=count).clamp_min(1).to(flat.dtype)
    mean = mean / votes[:, None]
    if nb:
        best = torch.zeros(count, dtype=flat.dtype, device=flat.device)
        best.index_add_(0, region[voters], flat[:nb, voters].amax(0))
        background = winner == kinds - 1
        mean[:, :nb] = torch.where(background[:, None], (best / votes)[:, None], mean[:, :nb])
    return mean[region].t().reshape(logits.shape)


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


class CLIPTrase(TrainingFreeMethod):
    defaults: ClassVar[dict[str, Any]] = {
        "correlation_layer": 11,  # the block whose self-correlation is read (m.py:248-249: ViT-B/16's 11)
        "recalibrate": True,  # subtract the CLS row, clamp at 0 (clip_self_correlation.py:151-152)
        "clustering": True,  # DBSCAN regions voting (clip_self_correlation.py:167-210); off: the argmax
        "eps": 0.7,  # DBSCAN radius (clip_self_correlation.py:233, 224 px; 336 px: 1.1, :234)
        "min_samples": 3,  # DBSCAN core size (clip_self_correlation.py:233, 224 px; 336 px: 7, :234)
        "smooth_ratio": 4,  # cluster maps upsampled x ratio, median side 2 ratio - 1 (:189-195)
        "cls_token_scaling": False,  # patch cosines x CLS cosines (VOC20 only, :159-161)
        "background_texts": 0,  # the first n texts vote as one label, ranked last (:164-166, :213-214)
    }

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        o = self.options
        problems = [
            *(f"{k} must be true or false" for k in ("recalibrate", "clustering", "cls_token_scaling")
              if not isinstance(o[k], bool)),
            *(f"{k} must be an integer >= {low}" for k, low in
              (("correlation_layer", 2), ("min_samples", 1), ("smooth_ratio", 1), ("background_texts", 0))
              if not _is_int(o[k]) or o[k] < low),
        ]
        if not isinstance(o["eps"], numbers.Real) or isinstance(o["eps"], bool) or not o["eps"] > 0:
            problems.append("eps must be a number > 0")
        if problems:
            raise ValueError(f"CLIPTrase options: {'; '.join(problems)} (got {o})")

    def needs(self) -> Needs:
        """The input of the correlation block: the output of the block before it."""
        return Needs(outputs=frozenset({self.options["correlation_layer"] - 1}))

    def _check(self, trunk: Trunk, text: torch.Tensor) -> None:
        layer, layers = self.options["correlation_layer"], trunk.layers
        if not 2 <= layer <= layers - 1:
            raise ValueError(f"CLIPTrase: correlation_layer={layer} must name a block before the last, "
                             f"2..{layers - 1} for this {layers}-block CLIP (its input is the output of "
                             f"block {layer - 1})")
        if self.options["background_texts"] > text.shape[0]:
            raise ValueError(f"CLIPTrase: background_texts={self.options['background_texts']} exceeds the "
                             f"{text.shape[0]} texts")

    def logits(self, clip: ClipBackbone, trunk: Trunk, image: torch.Tensor, text: torch.Tensor,
               size: tuple[int, int]) -> torch.Tensor:
        self._check(trunk, text)
        o = self.options
        visual = clip.model.visual
        blocks = list(visual.transformer.resblocks)
        layer = o["correlation_layer"]
        tokens = visual.ln_post(correlative_block(blocks[-1], trunk.x))
        embedded = clip.project(tokens)
        logits = zero_shot_logits(embedded[:, 1:], trunk.grid, text, size)
        with torch.autocast(device_type=logits.device.type, enabled=False):
            if o["cls_token_scaling"]:
                cls = F.normalize(_wide(embedded[:, 0]).to(logits.dtype), dim=-1)
                logits = logits * (cls @ F.normalize(text.to(logits.dtype), dim=-1).t())[:, :, None, None]
            if not o["clustering"]:
                return logits
            correlation = self_correlation(blocks[layer - 1], trunk.outputs[layer - 1])
            correlation = recalibrated(correlation) if o["recalibrate"] else correlation[:, 1:, 1:]
            out = []
            for b in range(logits.shape[0]):
                regions = cluster_regions(correlation[b].to(logits.dtype), trunk.grid, size, o["eps"],
                                          o["min_samples"], o["smooth_ratio"])
                out.append(logits[b] if regions is None else vote(logits[b], regions, o["background_texts"]))
            return torch.stack(out)
