"""Augmentations: one geometry for all four images, colour on inputs only, grid on both paths."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from depthkit.loader.augment import AugmentConfig
from depthkit.loader.config import LoaderConfig
from depthkit.loader.gridwarp import grid_distort, grid_distort_hwc
from depthkit.loader.photometric import IDENTITY, apply_color
from depthkit.loader.pipeline import build_loader
from depthkit.shard import schema
from depthkit.shard.tario import write_tar

RES = 48
GEOMETRY = replace(AugmentConfig.none(), p_hflip=0.5, p_rot90=0.5, p_shift_scale_rotate=1.0,
                   p_grid=0.5, rotate=30.0)
NORM = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}


def _jpeg(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "JPEG", quality=100)
    return buf.getvalue()


def _pattern(seed: int) -> np.ndarray:
    """An asymmetric black/white pattern of 8 px blocks (survives JPEG and interpolation)."""
    blocks = np.random.default_rng(seed).integers(0, 2, (RES // 8, RES // 8)).astype(np.uint8)
    blocks[0, :] = 1  # no symmetry: a flip or rotation always changes it
    blocks[:, 0] = 0
    return np.kron(blocks, np.ones((8, 8), np.uint8)) * 255


@pytest.fixture(scope="module")
def pattern_shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shards whose bg, fgbg, mask and depth are all the SAME pattern (one per sample/bg)."""
    root = tmp_path_factory.mktemp("pattern")
    (root / str(RES)).mkdir()
    ids = [1, 2, 3, 4]
    write_tar(root / f"{RES}/backgrounds.tar", root / f"{RES}/backgrounds.idx",
              [(f"{schema.bg_key(b)}.jpg", _jpeg(np.repeat(_pattern(b)[..., None], 3, 2)))
               for b in ids])
    items = []
    for i in range(16):
        b = ids[i % 4]
        key, pat = schema.sample_key(b, 1, i + 1), _pattern(b)
        items += [(f"{key}.{schema.EXT_FGBG}", _jpeg(np.repeat(pat[..., None], 3, 2))),
                  (f"{key}.{schema.EXT_MASK}", _jpeg(pat)),
                  (f"{key}.{schema.EXT_DEPTH}", _jpeg(pat)),
                  (f"{key}.{schema.EXT_BGID}", schema.encode_bgid(b))]
    write_tar(root / f"{RES}/train-000000.tar", root / f"{RES}/train-000000.idx", items)
    entry = {"tar": f"{RES}/train-000000.tar", "index": f"{RES}/train-000000.idx", "samples": 16}
    manifest = {
        "format": schema.FORMAT_NAME, "version": schema.FORMAT_VERSION, "resolutions": [RES],
        "counts": {"train": 16, "val": 0}, "backgrounds": ids,
        "stats": {"bg": NORM, "fgbg": NORM},
        "files": {str(RES): {"backgrounds": {"tar": f"{RES}/backgrounds.tar",
                                             "index": f"{RES}/backgrounds.idx", "samples": 4},
                             "train": [entry], "val": []}},
    }
    (root / schema.MANIFEST_NAME).write_text(json.dumps(manifest))
    return root


def _unit(x: torch.Tensor) -> torch.Tensor:
    """Normalised (B,3,H,W) back to [0, 1] gray (B,1,H,W) under NORM."""
    return (x * 0.25 + 0.5).mean(1, keepdim=True)


def _batches(root: Path, augment: AugmentConfig | None, **kw) -> list[dict]:
    cfg = LoaderConfig(root, res=RES, batch_size=8, augment=augment, shuffle=False, **kw)
    return list(build_loader(cfg))


def test_config_validates_and_none_switches_everything_off() -> None:
    with pytest.raises(ValueError, match="p_hflip"):
        AugmentConfig(p_hflip=1.5)
    off = AugmentConfig.none()
    assert not off.any_geometry and not off.any_color and off.p_grid == 0
    assert AugmentConfig().any_geometry and AugmentConfig().any_color


def test_known_pattern_warps_identically_in_all_four_outputs(pattern_shards: Path) -> None:
    """Every geometric op on: the four outputs must still show the same pattern."""
    plain = _batches(pattern_shards, None)
    warped = _batches(pattern_shards, GEOMETRY, seed=5)
    changed = 0
    for ref, b in zip(plain, warped, strict=True):
        bg, fgbg, depth, mask = _unit(b["bg"]), _unit(b["fgbg"]), b["depth"], b["mask"]
        for other in (fgbg, depth, mask):
            # Pixels that disagree by more than half the contrast: only interpolated edges.
            assert ((bg - other).abs() > 0.5).float().mean() < 0.02
        assert torch.equal(mask, (depth >= 0.5).float()) or \
            (mask != (depth >= 0.5).float()).float().mean() < 0.02
        changed += int(((_unit(ref["bg"]) - bg).abs() > 0.5).flatten(1).any(1).sum())
    assert changed >= 12  # the augmentation really moved (almost) every sample


def test_flip_only_is_an_exact_mirror(pattern_shards: Path) -> None:
    plain = _batches(pattern_shards, None)
    flipped = _batches(pattern_shards, replace(AugmentConfig.none(), p_hflip=1.0))
    for ref, b in zip(plain, flipped, strict=True):
        for key in ("bg", "fgbg", "mask", "depth"):
            assert torch.equal(b[key], torch.flip(ref[key], dims=[3])), key


def test_colour_changes_inputs_and_never_mask_or_depth(pattern_shards: Path) -> None:
    colour = replace(AugmentConfig.none(), p_color=1.0, p_gray=1.0, brightness=0.5, hue=90.0)
    plain = _batches(pattern_shards, None)
    recoloured = _batches(pattern_shards, colour, seed=3)
    for ref, b in zip(plain, recoloured, strict=True):
        assert torch.equal(b["mask"], ref["mask"]) and torch.equal(b["depth"], ref["depth"])
        assert not torch.allclose(b["bg"], ref["bg"], atol=0.05)
        assert b["bg"].min() >= -2.0 - 1e-5 and b["bg"].max() <= 2.0 + 1e-5  # clipped to [0, 1]


def test_apply_color_identity_gray_and_range() -> None:
    x = torch.rand(2, 3, 8, 8) * 4 - 2  # normalised values of [0, 1] images under NORM
    same = apply_color(x, torch.tensor([IDENTITY, IDENTITY]), NORM["mean"], NORM["std"])
    assert torch.allclose(same, x, atol=1e-5)
    gray = apply_color(x, torch.tensor([[1.0, 1.0, 0.0, 0.0]] * 2), NORM["mean"], NORM["std"])
    assert torch.allclose(gray[:, 0], gray[:, 1], atol=1e-5)
    assert torch.allclose(gray[:, 1], gray[:, 2], atol=1e-5)
    bright = apply_color(x, torch.tensor([[3.0, 1.0, 0.0, 1.0]] * 2), NORM["mean"], NORM["std"])
    assert bright.max() <= 2.0 + 1e-5 and bright.mean() > x.mean()


def test_grid_identity_is_exact_and_cpu_matches_torch() -> None:
    img = np.random.default_rng(0).integers(0, 256, (40, 56, 3)).astype(np.uint8)
    zero = np.zeros((2, 5), np.float32)
    assert np.array_equal(grid_distort_hwc(img, zero), img)
    params = np.random.default_rng(1).uniform(-0.3, 0.3, (2, 5)).astype(np.float32)
    cpu = grid_distort_hwc(img, params).astype(np.float32)
    assert np.abs(cpu - img).mean() > 5  # it does distort
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float()
    ref = grid_distort(x, torch.from_numpy(params)[None])[0].permute(1, 2, 0).numpy()
    assert np.abs(cpu - ref).max() <= 2.0  # same map; only 8-bit weight rounding differs
