"""Losses against hand-computed values on tiny maps."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from depthkit.core.errors import DepthkitError
from depthkit.train.config import LossConfig
from depthkit.train.losses import (
    align_scale_shift,
    depth_loss_fn,
    gradient_matching,
    lovasz_hinge_loss,
    mask_loss_fn,
    soft_dice_loss,
)


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


def _ramp_target(n: int = 8) -> torch.Tensor:
    """(2, 1, n, n) depth-like targets in [0, 1]: a vertical ramp and a ramp with a step."""
    rows = torch.linspace(0, 1, n).view(n, 1).expand(n, n)
    step = rows.clone()
    step[2:5, 3:6] = 0.2  # a near object
    return torch.stack([rows, step]).unsqueeze(1)


def test_alignment_undoes_any_scale_and_shift() -> None:
    t = _ramp_target()
    for scale, shift in ((2.0, 0.3), (0.5, -1.0), (-3.0, 4.0)):
        assert torch.allclose(align_scale_shift(scale * t + shift, t), t, atol=1e-5)


def test_alignment_is_per_image() -> None:
    t = _ramp_target()
    pred = torch.cat([3 * t[:1] - 1, 0.5 * t[1:] + 2])  # another scale and shift per image
    assert torch.allclose(align_scale_shift(pred, t), t, atol=1e-5)


def test_gradient_matching_of_a_ramp_counts_each_scale() -> None:
    ramp = torch.arange(8.0).view(1, 1, 1, 8).expand(1, 1, 8, 8)  # x step 1, no y change
    assert gradient_matching(ramp, scales=1).item() == pytest.approx(1.0)
    assert gradient_matching(ramp, scales=2).item() == pytest.approx(1.0 + 2.0)  # every 2nd px
    assert gradient_matching(torch.full((1, 1, 8, 8), 0.7)).item() == 0.0


def test_l1_ssi_grad_is_plain_l1_for_a_scaled_and_shifted_answer() -> None:
    # The MiDaS terms see no error in a prediction that is the target up to scale and shift;
    # only the L1 that anchors the 0-1 scale does.
    t = _ramp_target()
    loss = depth_loss_fn(LossConfig(depth="l1_ssi_grad"))
    pred = 1.5 * t + 0.2
    assert loss(pred, t).item() == pytest.approx(F.l1_loss(pred, t).item(), abs=1e-6)
    assert loss(t, t).item() == pytest.approx(0.0, abs=1e-6)


def test_l1_ssi_grad_structure_terms_ignore_scale_and_shift_of_a_wrong_answer() -> None:
    t = _ramp_target()
    wrong = t.flip(-1) * 0.8 + 0.1 * torch.rand_like(t)  # wrong structure, not just scale
    loss = depth_loss_fn(LossConfig(depth="l1_ssi_grad"))

    def structure(p: torch.Tensor) -> float:
        return loss(p, t).item() - F.l1_loss(p, t).item()

    assert structure(wrong) > 0.05
    assert structure(2.5 * wrong - 0.7) == pytest.approx(structure(wrong), rel=1e-4)


def test_l1_ssi_grad_weights_scale_their_terms() -> None:
    t = _ramp_target()
    pred = t.flip(-2)
    base = F.l1_loss(pred, t).item()
    full = depth_loss_fn(LossConfig(depth="l1_ssi_grad"))(pred, t).item()
    only_align = depth_loss_fn(LossConfig(depth="l1_ssi_grad", grad_weight=0.0))(pred, t).item()
    residual = align_scale_shift(pred, t) - t
    assert only_align == pytest.approx(base + residual.abs().mean().item(), rel=1e-5)
    assert full == pytest.approx(only_align + gradient_matching(residual).item(), rel=1e-5)


def test_l1_ssi_grad_runs_without_host_syncs(count_syncs) -> None:
    t = _ramp_target()
    pred = torch.rand_like(t, requires_grad=True)
    loss = depth_loss_fn(LossConfig(depth="l1_ssi_grad"))
    with count_syncs() as c:
        value = loss(pred, t)
        value.backward()
    assert c.ops == []
    assert pred.grad is not None and pred.grad.abs().sum() > 0
