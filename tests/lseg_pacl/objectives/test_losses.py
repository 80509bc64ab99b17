import math

import pytest
import torch
import torch.nn.functional as F

from lseg_pacl.objectives.losses import contrastive_loss


def test_clip_loss_is_symmetric_and_finite():
    logits = torch.randn(6, 6, generator=torch.Generator().manual_seed(1)) * 10
    loss = contrastive_loss(logits)
    assert torch.isfinite(loss)
    torch.testing.assert_close(loss, contrastive_loss(logits.t()))
    labels = torch.arange(6)
    expected = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2
    torch.testing.assert_close(loss, expected)


def test_multi_positive_loss_with_the_diagonal_equals_clip_loss():
    logits = torch.randn(5, 5, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(
        contrastive_loss(logits, torch.eye(5, dtype=torch.bool)), contrastive_loss(logits)
    )


def test_multi_positive_loss_is_symmetric_under_transpose():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(4, 7, generator=g)
    pos = torch.zeros(4, 7, dtype=torch.bool)
    pos[torch.arange(4), torch.arange(4)] = True
    pos[:, 4:] = torch.rand(4, 3, generator=g) > 0.4
    pos[0, 4:] = True  # every extra text has an owner
    torch.testing.assert_close(contrastive_loss(logits, pos), contrastive_loss(logits.t(), pos.t()))


def test_multi_positive_targets_spread_over_positives():
    logits = torch.zeros(1, 2)
    pos = torch.tensor([[True, True]])
    # both texts positive and equally scored: image->text is log 2, each text->image is 0
    assert contrastive_loss(logits, pos).item() == pytest.approx(math.log(2) / 2)


def test_a_text_without_any_positive_is_an_error():
    with pytest.raises(ValueError, match="positive"):
        contrastive_loss(torch.zeros(2, 3), torch.tensor([[True, False, False], [False, True, False]]))
