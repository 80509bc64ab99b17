"""PACL's two diagnostics (docs/methods.md#pacl), on tensors, so any model's patch embeddings can be checked.

1. Patch-level classification: each patch is classified zero-shot by the argmax cosine of its embedding to the
   class text embeddings and compared with the majority label of its pixels. Low for plain CLIP (patch tokens
   are not aligned with text), high after PACL's embedder is trained; the gap is what PACL's training buys.
2. Semantic coherence: the cosine between two patches' vision features as a binary classifier of "same class"
   versus "different class", reported as ROC-AUC. High coherence in CLIP's own patch tokens is why a light
   embedder suffices.

Counts and pairs come back per batch so callers can accumulate them over a dataset.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lseg_pacl.evaluation.inference import resize_short_side

ANALYSES = ("patch_accuracy", "coherence")  # what eval.analysis may ask for
PATCHES_PER_IMAGE = 64  # patches each image adds to the coherence pool


@torch.no_grad()
def patch_majority_labels(mask: torch.Tensor, grid: tuple[int, int], ignore_index: int = 255) -> torch.Tensor:
    """[B, H, W] pixel labels -> [B, gh * gw] (row-major) majority label of each patch's valid pixels.

    H and W must be divisible by the grid. Pixels equal to ``ignore_index`` do not vote; a patch with no valid
    pixel gets ``ignore_index``; a tie goes to the smallest id.
    """
    if mask.dim() != 3:
        raise ValueError(f"mask must be [B, H, W], got shape {tuple(mask.shape)}")
    b, h, w = mask.shape
    gh, gw = grid
    if gh <= 0 or gw <= 0 or h % gh or w % gw:
        raise ValueError(f"mask of size {h}x{w} does not divide into a {gh}x{gw} grid")
    ph, pw = h // gh, w // gw
    patches = mask.long().reshape(b, gh, ph, gw, pw).permute(0, 1, 3, 2, 4).reshape(b * gh * gw, ph * pw)
    valid = patches != ignore_index
    out = torch.full((b * gh * gw,), ignore_index, dtype=torch.long, device=mask.device)
    if not valid.any():
        return out.view(b, gh * gw)
    labels = patches[valid]
    if labels.min() < 0:
        raise ValueError(f"mask holds negative labels other than the ignore index {ignore_index}")
    num = int(labels.max()) + 1
    rows = torch.arange(b * gh * gw, device=mask.device).unsqueeze(1).expand_as(patches)[valid]
    counts = torch.bincount(rows * num + labels, minlength=b * gh * gw * num).view(b * gh * gw, num)
    majority = counts.argmax(dim=1)  # the first maximum: ties go to the smallest id
    has_valid = valid.any(dim=1)
    out[has_valid] = majority[has_valid]
    return out.view(b, gh * gw)


def _check_dense(dense: torch.Tensor, labels: torch.Tensor) -> None:
    if dense.dim() != 3:
        raise ValueError(f"dense must be [B, T, D], got shape {tuple(dense.shape)}")
    if tuple(labels.shape) != tuple(dense.shape[:2]):
        raise ValueError(f"labels have shape {tuple(labels.shape)}, dense patches {tuple(dense.shape[:2])}")


@torch.no_grad()
def patch_accuracy(
    dense: torch.Tensor, class_embeddings: torch.Tensor, labels: torch.Tensor, ignore_index: int = 255
) -> tuple[int, int]:
    """(correct, counted) of zero-shot patch classification: each patch of ``dense`` [B, T, D] takes the class
    of ``class_embeddings`` [C, D] with the largest cosine; only patches whose label [B, T] is not ignored
    count."""
    _check_dense(dense, labels)
    if class_embeddings.dim() != 2 or class_embeddings.shape[1] != dense.shape[2]:
        raise ValueError(
            f"class_embeddings must be [C, {dense.shape[2]}], got {tuple(class_embeddings.shape)}"
        )
    labels = labels.to(dense.device)
    valid = labels != ignore_index
    counted = int(valid.sum())
    if counted == 0:
        return 0, 0
    target = labels[valid].long()
    if target.min() < 0 or target.max() >= class_embeddings.shape[0]:
        raise ValueError(f"labels must lie in [0, {class_embeddings.shape[0]}) or be {ignore_index}")
    patches = F.normalize(dense[valid].float(), dim=-1)
    classes = F.normalize(class_embeddings.to(dense.device).float(), dim=-1)
    predicted = (patches @ classes.T).argmax(dim=-1)
    return int((predicted == target).sum()), counted


def _uniform_below(bound: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One uniform integer in [0, bound_k) per entry of ``bound`` (all >= 1)."""
    u = torch.rand(bound.shape, generator=generator, device=generator.device, dtype=torch.float64)
    return torch.minimum((u * bound).long(), bound - 1)


@torch.no_grad()
def coherence_pairs(
    dense: torch.Tensor,
    labels: torch.Tensor,
    max_pairs: int,
    generator: torch.Generator,
    ignore_index: int = 255,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random pairs of distinct labelled patches from anywhere in the batch: (cosines [N] float32,
    same_class [N] bool), both on the CPU.

    Balanced: max_pairs // 2 same-class pairs and the rest different-class, each drawn uniformly with
    replacement from all pairs of its kind (ordered, i != j). Where one kind does not exist (one class, or no
    class with two patches) all max_pairs are of the other kind; with fewer than two labelled patches, N = 0.
    (ROC-AUC does not depend on the ratio; balancing only lowers its variance.) The same generator state gives
    the same pairs.
    """
    _check_dense(dense, labels)
    if max_pairs < 0:
        raise ValueError(f"max_pairs must be >= 0, got {max_pairs}")
    device = generator.device
    flat_labels = labels.reshape(-1).to(device).long()
    where = (flat_labels != ignore_index).nonzero().squeeze(1)
    labelled, order = torch.sort(flat_labels[where], stable=True)
    where = where[order]  # patch indices grouped by class
    _, counts = torch.unique_consecutive(labelled, return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    n = int(where.numel())
    counts64 = counts.double()
    same_total = int((counts * (counts - 1)).sum()) // 2
    diff_total = (n * n - int((counts * counts).sum())) // 2

    if same_total and diff_total:
        n_same = max_pairs // 2
    else:
        n_same = max_pairs if same_total else 0
    n_diff = max_pairs - n_same if diff_total else 0
    first, second = [], []
    if n_same:  # class weighted by its number of pairs, then two distinct members
        k = torch.multinomial(counts64 * (counts64 - 1), n_same, replacement=True, generator=generator)
        i = _uniform_below(counts[k], generator)
        j = _uniform_below(counts[k] - 1, generator)
        j = j + (j >= i).long()
        first.append(starts[k] + i)
        second.append(starts[k] + j)
    if n_diff:  # class weighted by members x non-members, then a member and a non-member
        k = torch.multinomial(counts64 * (n - counts64), n_diff, replacement=True, generator=generator)
        i = _uniform_below(counts[k], generator)
        j = _uniform_below(n - counts[k], generator)
        j = j + (j >= starts[k]).long() * counts[k]
        first.append(starts[k] + i)
        second.append(j)
    if not first:
        return torch.zeros(0), torch.zeros(0, dtype=torch.bool)
    a, b = where[torch.cat(first)], where[torch.cat(second)]
    same = flat_labels[a] == flat_labels[b]
    flat_dense = dense.reshape(-1, dense.shape[-1])
    a, b = a.to(dense.device), b.to(dense.device)
    cosines = F.cosine_similarity(flat_dense[a].float(), flat_dense[b].float(), dim=-1)
    return cosines.cpu(), same.cpu()


def coherence_auroc(cosines: torch.Tensor, same: torch.Tensor) -> float:
    """ROC-AUC of the cosine as a score for "same class": the probability that a random same-class pair has a
    higher cosine than a random different-class pair, ties counting one half (exact Mann-Whitney
    statistic)."""
    cosines = torch.as_tensor(cosines).detach().reshape(-1).cpu().double()
    same = torch.as_tensor(same).detach().reshape(-1).cpu().bool()
    if cosines.numel() != same.numel():
        raise ValueError(f"{cosines.numel()} cosines but {same.numel()} same-class flags")
    if not torch.isfinite(cosines).all():
        raise ValueError("cosines must be finite")
    positives = int(same.sum())
    negatives = int(same.numel()) - positives
    if positives == 0 or negatives == 0:
        raise ValueError(
            f"ROC-AUC needs both kinds of pair; got {positives} same-class and {negatives} "
            f"different-class pairs"
        )
    _, inverse, counts = torch.unique(cosines, sorted=True, return_inverse=True, return_counts=True)
    below = torch.cumsum(counts, 0) - counts
    mid_rank = below.double() + (counts.double() + 1) / 2  # 1-based ranks, ties share their mean
    rank_sum = mid_rank[inverse][same].sum().item()
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


class Diagnostics:
    """PACL's patch-level accuracy and semantic coherence, accumulated over a benchmark, per feature view."""

    def __init__(self, views: dict, analysis: list[str], max_pairs: int) -> None:
        self.views, self.analysis, self.max_pairs = views, analysis, max_pairs
        self.correct = dict.fromkeys(views, 0)
        self.counted = dict.fromkeys(views, 0)
        self.pool: dict[str, list] = {v: [] for v in views}
        self.generator = torch.Generator().manual_seed(0)

    def update(
        self,
        image: torch.Tensor,
        mask: torch.Tensor,
        classes: torch.Tensor,
        scored: list[int],
        short_side: int,
        patch: int,
        ignore_index: int = 255,
    ) -> None:
        x = resize_short_side(image, short_side)
        m = torch.nn.functional.interpolate(mask[:, None].float(), size=tuple(x.shape[-2:]), mode="nearest")
        h, w = (x.shape[-2] // patch) * patch, (x.shape[-1] // patch) * patch  # whole patches only
        x, m = x[..., :h, :w], m[:, 0, :h, :w].long()
        to_scored = torch.full((ignore_index + 1,), ignore_index, dtype=torch.long)
        to_scored[torch.tensor(scored)] = torch.arange(len(scored))
        picked: dict[tuple[int, int], torch.Tensor] = {}  # per grid: the same patches for every view
        for name, (fn, grid_of) in self.views.items():
            grid = grid_of(h, w)
            labels = to_scored[patch_majority_labels(m, grid, ignore_index).cpu()]
            if grid not in picked:
                keep = (labels[0] != ignore_index).nonzero().flatten()
                picked[grid] = keep[torch.randperm(len(keep), generator=self.generator)[:PATCHES_PER_IMAGE]]
            dense = fn(x).float().cpu()
            if "patch_accuracy" in self.analysis:
                ok, n = patch_accuracy(dense, classes.cpu(), labels, ignore_index)
                self.correct[name] += ok
                self.counted[name] += n
            if "coherence" in self.analysis:
                keep = picked[grid]
                self.pool[name].append((dense[0, keep], labels[0, keep]))

    def result(self) -> dict:
        out = {}
        for name in self.views:
            figures: dict = {}
            if "patch_accuracy" in self.analysis:
                figures["patch_accuracy"] = (
                    self.correct[name] / self.counted[name] if self.counted[name] else None
                )
            if "coherence" in self.analysis and self.pool[name]:
                dense = torch.cat([d for d, _ in self.pool[name]])[None]
                labels = torch.cat([lab for _, lab in self.pool[name]])[None]
                cos, same = coherence_pairs(dense, labels, self.max_pairs, torch.Generator().manual_seed(0))
                try:
                    figures["coherence_auroc"] = coherence_auroc(cos, same)
                except ValueError:
                    figures["coherence_auroc"] = None
            out[name] = figures
        return out
