"""Metrics against values computed by hand on tiny arrays."""

from __future__ import annotations

import math
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from depthkit.eval.metrics import SSIM_C1, MetricAccumulator, ssim_per_image


def t(rows: list[list[float]]) -> torch.Tensor:
    """A (1, 1, H, W) tensor from nested lists."""
    return torch.tensor(rows, dtype=torch.float32).view(1, 1, len(rows), len(rows[0]))


def run(mask_prob, mask_true, depth_pred, depth_true) -> dict[str, float]:
    acc = MetricAccumulator()
    acc.update(mask_prob, mask_true, depth_pred, depth_true)
    acc.reduce()
    return acc.compute()


MASK = t([[1, 1], [0, 0]])
DEPTH = t([[0.25, 0.75], [0.25, 0.75]])


def test_perfect_prediction() -> None:
    m = run(MASK, MASK, DEPTH, DEPTH)
    for key in ("mask_iou", "mask_iou_per_image", "mask_dice", "mask_acc",
                "depth_delta1", "depth_delta2", "depth_delta3", "depth_ssim"):
        assert m[key] == pytest.approx(1.0), key
    for key in ("depth_rmse", "depth_mae", "depth_abs_rel", "depth_log10"):
        assert m[key] == pytest.approx(0.0, abs=1e-7), key
    assert m["samples"] == 1


def test_all_wrong() -> None:
    # Mask inverted; depth 1 - g: |error| = 0.5 everywhere, ratios 0.75/0.25 = 3.
    m = run(1 - MASK, MASK, 1 - DEPTH, DEPTH)
    assert m["mask_iou"] == 0.0
    assert m["mask_dice"] == 0.0
    assert m["mask_acc"] == 0.0
    assert m["depth_rmse"] == pytest.approx(0.5)
    assert m["depth_mae"] == pytest.approx(0.5)
    assert m["depth_abs_rel"] == pytest.approx((0.5 / 0.25 + 0.5 / 0.75) / 2)
    assert m["depth_log10"] == pytest.approx(math.log10(3))
    assert (m["depth_delta1"], m["depth_delta2"], m["depth_delta3"]) == (0.0, 0.0, 0.0)
    # A 2x2 map shrinks the SSIM window to 1 pixel: only the luminance term is left,
    # (2 * 0.25 * 0.75 + C1) / (0.25^2 + 0.75^2 + C1) at every pixel.
    assert m["depth_ssim"] == pytest.approx((0.375 + SSIM_C1) / (0.625 + SSIM_C1))


def test_half_right() -> None:
    # TP=1, FP=1, FN=1, TN=1.
    pred = t([[0.9, 0.2], [0.7, 0.1]])
    # Depth: two pixels exact, one off by 0.1 (ratio 0.6/0.5=1.2 < 1.25), one off by 0.3
    # (ratio 0.8/0.5 = 1.6: fails 1.25 and 1.5625, passes 1.953).
    dp = t([[0.5, 0.5], [0.6, 0.8]])
    dt = t([[0.5, 0.5], [0.5, 0.5]])
    m = run(pred, MASK, dp, dt)
    assert m["mask_iou"] == pytest.approx(1 / 3)
    assert m["mask_iou_per_image"] == pytest.approx(1 / 3)
    assert m["mask_dice"] == pytest.approx(0.5)
    assert m["mask_acc"] == pytest.approx(0.5)
    assert m["depth_mae"] == pytest.approx((0.1 + 0.3) / 4)
    assert m["depth_rmse"] == pytest.approx(math.sqrt((0.01 + 0.09) / 4))
    assert m["depth_abs_rel"] == pytest.approx((0.1 / 0.5 + 0.3 / 0.5) / 4)
    assert m["depth_delta1"] == pytest.approx(0.75)
    assert m["depth_delta2"] == pytest.approx(0.75)
    assert m["depth_delta3"] == pytest.approx(1.0)


def test_threshold_is_inclusive_at_one_half() -> None:
    m = run(t([[0.5, 0.4999]]), t([[1, 0]]), t([[0.5, 0.5]]), t([[0.5, 0.5]]))
    assert m["mask_iou"] == 1.0


def test_zero_depth_excluded_from_relative_metrics() -> None:
    # The gt=0 pixel counts in RMSE/MAE but not in abs_rel/delta (division by zero).
    dp = t([[0.2, 0.5]])
    dt = t([[0.0, 0.5]])
    m = run(t([[1, 1]]), t([[1, 1]]), dp, dt)
    assert m["depth_mae"] == pytest.approx(0.1)
    assert m["depth_abs_rel"] == pytest.approx(0.0)
    assert m["depth_delta1"] == pytest.approx(1.0)
    assert m["depth_valid_fraction"] == pytest.approx(0.5)


def test_dataset_iou_pools_pixels_per_image_iou_averages_images() -> None:
    # Image 1: big object, perfect (8/8). Image 2: 1-pixel object missed, 1 FP (0/2).
    true = torch.zeros(2, 1, 4, 4)
    true[0, 0, :2, :] = 1
    true[1, 0, 3, 3] = 1
    pred = true.clone()
    pred[1, 0, 3, 3] = 0
    pred[1, 0, 0, 0] = 1
    d = torch.full_like(true, 0.5)
    m = run(pred, true, d, d)
    assert m["mask_iou"] == pytest.approx(8 / 10)
    assert m["mask_iou_per_image"] == pytest.approx((1 + 0) / 2)
    assert m["samples"] == 2


def test_empty_mask_and_prediction_count_as_perfect() -> None:
    z = torch.zeros(1, 1, 3, 3)
    m = run(z, z, z + 0.5, z + 0.5)
    assert m["mask_iou"] == 1.0
    assert m["mask_iou_per_image"] == 1.0


def test_ssim_of_constant_maps_matches_formula() -> None:
    # Constant images: variances and covariance are 0, so SSIM = (2ab + C1) / (a^2 + b^2 + C1).
    a, b = 0.2, 0.6
    x = torch.full((1, 1, 16, 16), a, dtype=torch.float64)
    y = torch.full((1, 1, 16, 16), b, dtype=torch.float64)
    expected = (2 * a * b + SSIM_C1) / (a * a + b * b + SSIM_C1)
    assert ssim_per_image(x, y).item() == pytest.approx(expected, rel=1e-9)


def test_ssim_drops_with_noise() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 1, 32, 32, generator=g)
    noisy = (x + 0.3 * torch.randn(1, 1, 32, 32, generator=g)).clamp(0, 1)
    assert ssim_per_image(x, x).item() == pytest.approx(1.0, abs=1e-5)
    assert ssim_per_image(x, noisy).item() < 0.8


def random_batch(seed: int, n: int = 6, size: int = 16) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    mask_true = (torch.rand(n, 1, size, size, generator=g) > 0.6).float()
    mask_prob = (mask_true * 0.3 + 0.6 * torch.rand(n, 1, size, size, generator=g)).clamp(0, 1)
    depth_true = torch.rand(n, 1, size, size, generator=g)
    depth_pred = (depth_true + 0.1 * torch.randn(n, 1, size, size, generator=g)).clamp(0, 1)
    return mask_prob, mask_true, depth_pred, depth_true


def test_batches_accumulate_exactly() -> None:
    batch = random_batch(1)
    whole = run(*batch)
    parts = MetricAccumulator()
    for sl in (slice(0, 1), slice(1, 4), slice(4, 6)):
        parts.update(*(x[sl] for x in batch))
    split = parts.compute()
    assert split.keys() == whole.keys()
    for key, value in whole.items():
        assert split[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key
    assert 0.0 < whole["mask_iou"] < 1.0


def test_bad_shapes_rejected() -> None:
    acc = MetricAccumulator()
    with pytest.raises(ValueError, match="depth_true"):
        acc.update(MASK, MASK, DEPTH, torch.zeros(1, 1, 3, 3))


def _rank_main(rank: int, world: int, port: int, queue) -> None:
    torch.distributed.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    batch = random_batch(1)
    acc = MetricAccumulator()
    acc.update(*(x[rank::world] for x in batch))  # each rank sees a disjoint share
    acc.reduce()
    queue.put((rank, acc.compute()))
    torch.distributed.destroy_process_group()


def test_reduce_across_two_gloo_ranks_equals_single_process() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    procs = [ctx.Process(target=_rank_main, args=(r, 2, port, queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = dict(queue.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    expected = run(*random_batch(1))
    for rank in (0, 1):
        for key, value in expected.items():
            assert results[rank][key] == pytest.approx(value, rel=1e-9), (rank, key)
