"""PACL's diagnostics: patch majority labels, zero-shot patch accuracy, coherence pairs and their ROC-AUC."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from lseg_pacl.evaluation.diagnostics import (
    coherence_auroc,
    coherence_pairs,
    patch_accuracy,
    patch_majority_labels,
)

IGNORE = 255


def test_patch_majority_labels_hand_made():
    # 4x6 mask, 2x3 grid of 2x2 patches
    mask = torch.tensor([
        [1, 1, 2, 2, 255, 255],
        [1, 3, 2, 255, 255, 255],
        [4, 5, 7, 7, 0, 0],
        [5, 4, 6, 6, 0, 255],
    ])
    labels = patch_majority_labels(mask[None], (2, 3))
    assert labels.shape == (1, 6) and labels.dtype == torch.long
    # patch 0: 1 wins 3-1; patch 1: 2 (ignore does not vote even though it is in the majority);
    # patch 2: all ignored; patch 3: tie 4/5 -> 4; patch 4: tie 6/7 -> 6; patch 5: 0
    assert labels.tolist() == [[1, 2, IGNORE, 4, 6, 0]]


def test_patch_majority_labels_batch_row_major_and_custom_ignore():
    mask = torch.arange(16).reshape(4, 4).repeat_interleave(2, 0).repeat_interleave(2, 1)  # 8x8, 2x2 blocks
    mask = torch.stack([mask, mask.flip(-1)])
    labels = patch_majority_labels(mask, (4, 4))
    assert labels.tolist() == [list(range(16)), [r * 4 + c for r in range(4) for c in (3, 2, 1, 0)]]
    custom = torch.full((1, 4, 4), -1)
    custom[0, 0, 0] = 3
    assert patch_majority_labels(custom, (2, 2), ignore_index=-1).tolist() == [[3, -1, -1, -1]]
    assert patch_majority_labels(torch.full((2, 4, 4), IGNORE), (2, 2)).eq(IGNORE).all()
    with pytest.raises(ValueError, match="grid"):
        patch_majority_labels(torch.zeros(1, 5, 4, dtype=torch.long), (2, 2))


def _class_world(seed: int = 0, classes: int = 5, dim: int = 16):
    generator = torch.Generator().manual_seed(seed)
    class_embeddings = torch.randn(classes, dim, generator=generator)
    labels = torch.randint(0, classes, (3, 20), generator=generator)
    labels[0, :4] = IGNORE
    return class_embeddings, labels, generator


def test_patch_accuracy_perfect_when_patches_are_the_class_vectors():
    class_embeddings, labels, _ = _class_world()
    dense = class_embeddings[labels.clamp(max=4)] * 3.0  # scale does not matter to a cosine
    assert patch_accuracy(dense, class_embeddings, labels) == (56, 56)


def test_patch_accuracy_on_shuffled_labels_counts_exactly_the_matches():
    class_embeddings, labels, generator = _class_world()
    dense = class_embeddings[labels.clamp(max=4)]
    shuffled = labels.clone()
    valid = labels != IGNORE
    shuffled[valid] = labels[valid][torch.randperm(int(valid.sum()), generator=generator)]
    correct, counted = patch_accuracy(dense, class_embeddings, shuffled)
    assert counted == 56
    assert correct == int((shuffled[valid] == labels[valid]).sum()) < 56
    assert patch_accuracy(dense, class_embeddings, torch.full_like(labels, IGNORE)) == (0, 0)
    with pytest.raises(ValueError, match="labels"):
        patch_accuracy(dense, class_embeddings, torch.full_like(labels, 7))


def test_patch_accuracy_accumulates_over_batches():
    class_embeddings, labels, generator = _class_world()
    dense = torch.randn(3, 20, 16, generator=generator)
    whole = patch_accuracy(dense, class_embeddings, labels)
    parts = [patch_accuracy(dense[i:i + 1], class_embeddings, labels[i:i + 1]) for i in range(3)]
    assert whole == (sum(p[0] for p in parts), sum(p[1] for p in parts))
    # brute force
    valid = labels != IGNORE
    cos = F.cosine_similarity(dense[valid][:, None], class_embeddings[None], dim=-1)
    assert whole[0] == int((cos.argmax(-1) == labels[valid]).sum())


def test_coherence_pairs_balanced_valid_and_deterministic():
    class_embeddings, labels, _ = _class_world()
    dense = torch.randn(3, 20, 16, generator=torch.Generator().manual_seed(1))
    cos, same = coherence_pairs(dense, labels, 1000, torch.Generator().manual_seed(7))
    assert cos.shape == same.shape == (1000,) and cos.dtype == torch.float32 and same.dtype == torch.bool
    assert int(same.sum()) == 500
    again = coherence_pairs(dense, labels, 1000, torch.Generator().manual_seed(7))
    assert torch.equal(cos, again[0]) and torch.equal(same, again[1])
    other = coherence_pairs(dense, labels, 1000, torch.Generator().manual_seed(8))
    assert not torch.equal(cos, other[0])

    # every cosine is that of two distinct labelled patches whose same flag matches their labels
    flat, flat_labels = dense.reshape(-1, 16), labels.reshape(-1)
    valid = (flat_labels != IGNORE).nonzero().squeeze(1).tolist()
    table = {}
    for i, j in itertools.permutations(valid, 2):
        value = round(F.cosine_similarity(flat[i], flat[j], dim=0).item(), 5)
        table.setdefault(value, set()).add(bool(flat_labels[i] == flat_labels[j]))
    for c, s in zip(cos.tolist(), same.tolist(), strict=True):
        assert s in table[round(c, 5)]
    assert not any(abs(c - 1.0) < 1e-6 for c in cos.tolist())  # never a patch with itself


def test_coherence_pairs_uniform_over_pairs_of_each_kind():
    # patches 0,1,2 of class 0 and 3 of class 1: same pairs {0,1},{0,2},{1,2}; different {0,3},{1,3},{2,3}
    dense = torch.eye(4)[None] + torch.arange(4.0)[None, :, None] * 0.1  # distinct cosines for each pair
    labels = torch.tensor([[0, 0, 0, 1]])
    cos, same = coherence_pairs(dense, labels, 6000, torch.Generator().manual_seed(0))
    flat = dense[0]
    for kind, pairs in ((True, [(0, 1), (0, 2), (1, 2)]), (False, [(0, 3), (1, 3), (2, 3)])):
        for i, j in pairs:
            value = F.cosine_similarity(flat[i], flat[j], dim=0)
            hits = int(((cos - value).abs() < 1e-6).sum())
            assert 800 < hits < 1200, (kind, i, j, hits)
        assert int((same == kind).sum()) == 3000


def test_coherence_pairs_edge_cases():
    dense = torch.randn(1, 4, 8, generator=torch.Generator().manual_seed(0))
    generator = torch.Generator().manual_seed(0)
    one_class = coherence_pairs(dense, torch.tensor([[2, 2, 2, IGNORE]]), 10, generator)
    assert one_class[1].all() and len(one_class[1]) == 10  # no different-class pair exists
    singletons = coherence_pairs(dense, torch.tensor([[0, 1, 2, 3]]), 10, generator)
    assert not singletons[1].any() and len(singletons[1]) == 10  # no same-class pair exists
    mixed = coherence_pairs(dense, torch.tensor([[0, 0, 1, 2]]), 11, generator)
    assert int(mixed[1].sum()) == 5 and len(mixed[1]) == 11
    only = F.cosine_similarity(dense[0, 0], dense[0, 1], dim=0)
    assert torch.allclose(mixed[0][mixed[1]], only.expand(5))  # the one same-class pair, drawn five times
    lone = coherence_pairs(dense, torch.tensor([[0, IGNORE, IGNORE, IGNORE]]), 10, generator)
    assert lone[0].numel() == lone[1].numel() == 0
    assert coherence_pairs(dense, torch.tensor([[0, 0, 1, 1]]), 0, generator)[0].numel() == 0


def test_auroc_perfect_random_and_one_class():
    same = torch.tensor([True, True, False, False, True])
    assert coherence_auroc(torch.tensor([0.9, 0.8, 0.1, 0.2, 0.5]), same) == 1.0
    assert coherence_auroc(torch.tensor([0.1, 0.2, 0.9, 0.8, 0.05]), same) == 0.0
    assert coherence_auroc(torch.full((5,), 0.3), same) == 0.5  # all tied
    generator = torch.Generator().manual_seed(0)
    scores, same = torch.rand(20000, generator=generator), torch.rand(20000, generator=generator) < 0.5
    random = coherence_auroc(scores, same)
    assert abs(random - 0.5) < 0.02
    with pytest.raises(ValueError, match="both kinds"):
        coherence_auroc(torch.rand(4), torch.ones(4, dtype=torch.bool))
    with pytest.raises(ValueError, match="both kinds"):
        coherence_auroc(torch.zeros(0), torch.zeros(0, dtype=torch.bool))
    with pytest.raises(ValueError, match="finite"):
        coherence_auroc(torch.tensor([0.1, float("nan")]), torch.tensor([True, False]))


def _brute_force_auroc(scores: list[float], positive: list[bool]) -> float:
    pos = [s for s, p in zip(scores, positive, strict=True) if p]
    neg = [s for s, p in zip(scores, positive, strict=True) if not p]
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in pos for b in neg)
    return wins / (len(pos) * len(neg))


@pytest.mark.parametrize("seed", range(5))
def test_auroc_matches_brute_force_and_torchmetrics(seed):
    generator = torch.Generator().manual_seed(seed)
    same = torch.rand(300, generator=generator) < 0.4
    cosines = torch.randn(300, generator=generator) + same * 0.7
    cosines = (cosines * 4).round() / 4  # plenty of ties
    expected = _brute_force_auroc(cosines.tolist(), same.tolist())
    assert coherence_auroc(cosines, same) == pytest.approx(expected, abs=1e-12)
    from torchmetrics.functional.classification import binary_auroc

    assert coherence_auroc(cosines, same) == pytest.approx(
        binary_auroc(cosines, same.long()).item(), abs=1e-5
    )


def test_coherent_features_give_high_auroc_end_to_end():
    generator = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 32, generator=generator)
    labels = torch.randint(0, 4, (2, 49), generator=generator)
    dense = centres[labels] + 0.3 * torch.randn(2, 49, 32, generator=generator)
    cos, same = coherence_pairs(dense, labels, 2000, generator)
    assert coherence_auroc(cos, same) > 0.95
    noise = torch.randn(2, 49, 32, generator=generator)
    cos, same = coherence_pairs(noise, labels, 2000, generator)
    assert abs(coherence_auroc(cos, same) - 0.5) < 0.1
