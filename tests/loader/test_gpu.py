"""The DALI loader on a GPU: the same samples and geometry as the CPU backend for one seed,
the four outputs aligned, and steady-state batches that never make the host wait for the GPU.

Needs CUDA (skipped elsewhere, see tests/conftest.py) and DALI for CUDA.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from depthkit.loader import AugmentConfig, LoaderConfig, build_loader

pytestmark = pytest.mark.gpu

RES = 64
BATCH = 4
SEED = 3
# How far the two backends' images may lie apart, in [0, 1] units (1/255 = one level). They
# decode JPEG differently (nvJPEG vs libjpeg-turbo: IDCT and chroma upsampling, a few levels,
# most at colour edges), their bilinear warps round differently (a level), and the GPU
# grid-distorts float images where the CPU rounds uint8 (half a level). A sub-pixel
# difference in where a sharp edge is sampled can move one pixel a lot, so the bound is on the
# mean and on the share of far-off pixels, not on the maximum.
MEAN_TOL = 4 / 255
FAR = 32 / 255  # "far off": more than this
FAR_SHARE = 0.01  # at most this share of far-off pixels per batch
MASK_IOU = 0.99  # the two backends' masks, pooled over a batch


def _test_augment():
    """tests/loader/test_augment.py as a module (its alignment check, fixture and helpers)."""
    path = Path(__file__).with_name("test_augment.py")
    spec = importlib.util.spec_from_file_location("_augment_checks_for_gpu", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_AUG = _test_augment()
pattern_shards = _AUG.pattern_shards  # the fixture, shared with the CPU alignment test


def loader(root: Path, device: str, augment: AugmentConfig | None, seed: int = SEED):
    return build_loader(LoaderConfig(shards=root, split="train", res=RES, batch_size=BATCH,
                                     augment=augment, shuffle=True, seed=seed, device=device))


def epoch(root: Path, device: str, augment: AugmentConfig | None) -> tuple[list[dict], dict]:
    """Epoch 0's batches (moved to the CPU) and the loader's normalisation."""
    source = loader(root, device, augment)
    source.set_epoch(0)
    batches = [{k: v.cpu() for k, v in b.items()} for b in source]
    assert batches and batches[0]["bg"].shape[-1] == RES
    return batches, source.norm


def unit(x: torch.Tensor, stats: dict) -> torch.Tensor:
    """Normalised (B, 3, H, W) -> [0, 1]."""
    mean = torch.tensor(stats["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(stats["std"]).view(1, -1, 1, 1)
    return x * std + mean


def close_images(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    diff = (a - b).abs()
    assert diff.mean() <= MEAN_TOL, f"{what}: mean |cpu - gpu| {diff.mean():.4f}"
    far = (diff > FAR).float().mean()
    assert far <= FAR_SHARE, f"{what}: {far:.2%} of the pixels lie more than {FAR:.3f} apart"


def iou(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a >= 0.5, b >= 0.5
    union = (a | b).sum()
    return 1.0 if union == 0 else float((a & b).sum() / union)


def far_share(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per sample: the share of pixels more than FAR apart."""
    return ((a - b).abs() > FAR).flatten(1).float().mean(1)


def test_cpu_and_gpu_give_the_same_samples_and_geometry(shard_root: Path) -> None:
    augment = AugmentConfig()  # the training default: colour, flips, rotations, grid
    cpu, norm = epoch(shard_root, "cpu", augment)
    gpu, gpu_norm = epoch(shard_root, "cuda", augment)
    plain, _ = epoch(shard_root, "cuda", None)  # same seed, so the same samples, unaugmented
    assert gpu_norm == norm and len(gpu) == len(cpu) == len(plain)
    moved = 0
    for i, (c, g, p) in enumerate(zip(cpu, gpu, plain, strict=True)):
        assert torch.equal(c["bgid"], g["bgid"]), f"batch {i}: other samples"
        assert torch.equal(g["bgid"], p["bgid"]), f"batch {i}: augmenting changed the order"
        for key in ("bg", "fgbg"):
            close_images(unit(c[key], norm[key]), unit(g[key], norm[key]), f"batch {i} {key}")
        close_images(c["depth"], g["depth"], f"batch {i} depth")
        mask_iou = iou(c["mask"], g["mask"])
        assert mask_iou >= MASK_IOU, f"batch {i}: mask IoU between backends {mask_iou:.4f}"
        # the tolerance tells geometries apart: augmented vs plain samples fail it
        moved += int((far_share(unit(g["fgbg"], norm["fgbg"]),
                                unit(p["fgbg"], norm["fgbg"])) > FAR_SHARE).sum())
    assert moved >= len(gpu) * BATCH // 2


def test_four_outputs_stay_aligned_on_the_gpu(pattern_shards: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """test_augment's alignment check, with every loader it builds on the GPU."""
    on_cpu = _AUG._batches

    def on_gpu(root: Path, augment: AugmentConfig | None, **kw) -> list[dict]:
        batches = on_cpu(root, augment, device="cuda", **kw)
        assert batches[0]["bg"].is_cuda
        return [{k: v.cpu() for k, v in b.items()} for b in batches]

    monkeypatch.setattr(_AUG, "_batches", on_gpu)
    _AUG.test_known_pattern_warps_identically_in_all_four_outputs(pattern_shards)
    _AUG.test_flip_only_is_an_exact_mirror(pattern_shards)


def test_steady_state_batches_do_not_sync(shard_root: Path) -> None:
    """Every batch after the first one (pipeline start-up) under sync debug mode "error": a
    host read, a blocking copy or a data-dependent shape in the loader raises."""
    source = loader(shard_root, "cuda", AugmentConfig())
    source.set_epoch(0)
    n = len(source)
    assert n >= 3
    it = iter(source)
    first = next(it)
    total = torch.zeros((), device="cuda")
    try:
        torch.cuda.set_sync_debug_mode("error")
        for _ in range(n - 1):
            batch = next(it)
            total += batch["fgbg"].float().mean() + batch["mask"].float().mean()
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert first["bg"].is_cuda and batch["bg"].is_cuda
    assert torch.isfinite(total).item()
    assert next(it, None) is None  # the epoch ends after its batches
