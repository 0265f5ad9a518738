"""Losses against hand-computed values on tiny maps."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from depthkit.core.errors import DepthkitError
from depthkit.train.config import LossConfig
from depthkit.train.losses import lovasz_hinge_loss, mask_loss_fn, soft_dice_loss


def _square(n: int = 4) -> torch.Tensor:
    """(1, 1, n, n) target with a 2x2 object in the top-left corner."""
    t = torch.zeros(1, 1, n, n)
    t[..., :2, :2] = 1
    return t


def test_lovasz_is_zero_for_confident_right_answers() -> None:
    t = _square()
    logits = (2 * t - 1) * 5  # every margin past 1
    assert lovasz_hinge_loss(logits, t).item() == 0.0


def test_lovasz_of_unit_margins_is_twice_the_jaccard_loss() -> None:
    # With logits of +-1 the loss is the Lovasz extension at the indicator of wrong pixels,
    # which equals the Jaccard loss exactly; each wrong pixel's hinge error is 2.
    t = _square()
    pred = t.clone()
    pred[..., 0, 0] = 0  # one object pixel missed
    pred[..., 3, 3] = 1  # one background pixel taken
    iou = 3 / 5  # intersection 3, union 4 + 1
    loss = lovasz_hinge_loss(2 * pred - 1, t)
    assert loss.item() == pytest.approx(2 * (1 - iou))


def test_lovasz_of_undecided_logits_is_one() -> None:
    # All errors equal 1: the weights sum to the Jaccard loss of getting everything wrong, 1.
    t = _square()
    assert lovasz_hinge_loss(torch.zeros_like(t), t).item() == pytest.approx(1.0)


def test_lovasz_averages_over_images_and_handles_empty_targets() -> None:
    t = torch.cat([_square(), torch.zeros(1, 1, 4, 4)])
    logits = torch.cat([(2 * _square() - 1) * 5, torch.zeros(1, 1, 4, 4)])
    # image 1 is perfect (0); image 2 has no object: every pixel is a unit-error false positive.
    assert lovasz_hinge_loss(logits, t).item() == pytest.approx(0.5)


def test_lovasz_gradient_falls_on_the_wrong_pixels() -> None:
    t = _square()
    logits = ((2 * t - 1) * 5).requires_grad_()
    with torch.no_grad():
        logits[..., 3, 3] = 2.0  # a confident false positive
    lovasz_hinge_loss(logits, t).backward()
    grad = logits.grad.abs()
    assert grad[..., 3, 3] > 0
    assert grad.sum() == grad[..., 3, 3].sum()


def test_bce_lovasz_combines_both_terms() -> None:
    t = _square()
    logits = torch.randn(1, 1, 4, 4)
    cfg = LossConfig(mask="bce_lovasz", dice_weight=0.5)
    expected = F.binary_cross_entropy_with_logits(logits, t) + 0.5 * lovasz_hinge_loss(logits, t)
    assert mask_loss_fn(cfg)(logits, t).item() == pytest.approx(expected.item())


def test_soft_dice_of_a_perfect_confident_mask_is_near_zero() -> None:
    t = _square()
    assert soft_dice_loss((2 * t - 1) * 20, t).item() == pytest.approx(0.0, abs=1e-6)


def test_unknown_mask_loss_names_the_choices() -> None:
    with pytest.raises(DepthkitError, match="bce_lovasz"):
        mask_loss_fn(LossConfig(mask="focal"))
