"""Augmentations: one geometry for all four images, colour on inputs only, grid on both paths."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from nvidia.dali import fn, pipeline_def, types
from PIL import Image

from depthkit.loader import augment as aug
from depthkit.loader import graph
from depthkit.loader.augment import SLOTS, AugmentConfig, Draws, draw_size
from depthkit.loader.config import LoaderConfig
from depthkit.loader.cpuwarp import CpuWarp, permutation
from depthkit.loader.gridwarp import grid_distort
from depthkit.loader.photometric import IDENTITY, ColorSpace, apply_color
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
    space = ColorSpace.make(NORM["mean"], NORM["std"])
    same = apply_color(x, torch.tensor([IDENTITY, IDENTITY]), space)
    assert torch.allclose(same, x, atol=1e-5)
    gray = apply_color(x, torch.tensor([[1.0, 1.0, 0.0, 0.0]] * 2), space)
    assert torch.allclose(gray[:, 0], gray[:, 1], atol=1e-5)
    assert torch.allclose(gray[:, 1], gray[:, 2], atol=1e-5)
    bright = apply_color(x, torch.tensor([[3.0, 1.0, 0.0, 1.0]] * 2), space)
    assert bright.max() <= 2.0 + 1e-5 and bright.mean() > x.mean()


IDENT = np.array([[1, 0, 0], [0, 1, 0]], np.float32)
ZERO_GRID = np.zeros((2, 5), np.float32)


def _four(seed: int, n: int, res: int = RES) -> list[list[np.ndarray]]:
    """n random samples of bg, fgbg, mask (0/255), depth: uint8 HWC, 4 px blocks."""
    rng = np.random.default_rng(seed)

    def img(c: int) -> np.ndarray:
        blocks = rng.integers(0, 256, (res // 4, res // 4, c))
        return np.kron(blocks, np.ones((4, 4, 1))).astype(np.uint8)

    return [[img(3) for _ in range(n)], [img(3) for _ in range(n)],
            [(img(1) >= 128).astype(np.uint8) * 255 for _ in range(n)], [img(1) for _ in range(n)]]


def _const(batch: list) -> Callable[[], list]:
    """An external_source callback handing out the same batch every time."""
    return lambda: batch


def _dali_warps(images: list[list[np.ndarray]], angles: list[float]) -> tuple[list, list]:
    """(forward matrices, DALI warp_affine of bg, fgbg, mask (nearest), depth) per sample."""
    n = len(angles)

    @pipeline_def(batch_size=n, num_threads=1, device_id=None, seed=0)
    def pipe():
        ims = [fn.external_source(source=_const(x), batch=True, layout="HWC") for x in images]
        angle = fn.external_source(source=_const([np.array(a, np.float32) for a in angles]),
                                   batch=True)
        c = [RES / 2, RES / 2]
        m = fn.transforms.combine(fn.transforms.scale(scale=[1.1, 0.9], center=c),
                                  fn.transforms.rotation(angle=angle, center=c),
                                  fn.transforms.translation(offset=[1.7, -2.3]))
        warped = [fn.warp_affine(x, matrix=m, size=[RES, RES], inverse_map=False,
                                 interp_type=types.INTERP_NN if k == 2 else types.INTERP_LINEAR)
                  for k, x in enumerate(ims)]
        return (m, *warped)

    p = pipe()
    p.build()
    out = [[np.asarray(t) for t in node] for node in p.run()]
    return out[0], out[1:]


def test_cpu_warp_matches_dali_warp_affine() -> None:
    """Same coordinates and border as DALI: bilinear within 8-bit rounding, the mask exact."""
    images = _four(0, 4)
    matrices, ref = _dali_warps(images, [-40.0, -7.0, 12.0, 33.0])
    out = CpuWarp(RES)(*images, matrices, [ZERO_GRID] * 4)
    for k, key in enumerate(("bg", "fgbg", "mask", "depth")):
        for mine, theirs, src in zip(out[k], ref[k], images[k], strict=True):
            assert mine.shape == theirs.shape == src.shape, key
            err = np.abs(mine.astype(int) - theirs.astype(int)).max()
            assert err == 0 if key == "mask" else err <= 2, key
            assert np.abs(mine.astype(int) - src).mean() > 10, key  # it did warp


@pytest.mark.parametrize("quarter", [0, 1, 2, 3])
@pytest.mark.parametrize("flip", [False, True])
def test_flips_and_quarter_turns_are_copied_exactly(quarter: int, flip: bool) -> None:
    """The copy path of pure permutations equals resampling the same map."""
    c = RES / 2.0
    turn = np.array([[0.0, -1.0], [1.0, 0.0]])
    lin = np.linalg.matrix_power(turn, quarter) @ np.diag([-1.0 if flip else 1.0, 1.0])
    matrix = np.hstack([lin, (np.array([c, c]) - lin @ [c, c])[:, None]]).astype(np.float32)
    assert permutation(matrix, RES) is not None
    nudged = matrix.copy()  # sources 2e-3 px right and down: resampled at a zero 8-bit weight
    nudged[:, 2] -= lin @ [2e-3, 2e-3]
    assert permutation(nudged, RES) is None
    images = _four(quarter, 1)
    copied = CpuWarp(RES)(*images, [matrix], [ZERO_GRID])
    resampled = CpuWarp(RES)(*images, [nudged], [ZERO_GRID])
    for a, b, src in zip(copied, resampled, images, strict=True):
        assert np.array_equal(a[0], b[0])
        assert (quarter == 0 and not flip) or not np.array_equal(a[0], src[0])


def test_grid_identity_is_exact_and_cpu_matches_torch() -> None:
    images = _four(1, 2)
    same = CpuWarp(RES)(*images, [IDENT] * 2, [ZERO_GRID] * 2)
    for k in range(4):
        assert all(np.array_equal(a, b) for a, b in zip(same[k], images[k], strict=True))
    params = np.random.default_rng(1).uniform(-0.3, 0.3, (2, 2, 5)).astype(np.float32)
    cpu = CpuWarp(RES)(*images, [IDENT] * 2, list(params))
    x = torch.from_numpy(np.stack(images[0])).permute(0, 3, 1, 2).float()
    ref = grid_distort(x, torch.from_numpy(params)).permute(0, 2, 3, 1).numpy()
    got = np.stack(cpu[0]).astype(np.float32)
    assert np.abs(got - np.stack(images[0])).mean() > 5  # it does distort
    assert np.abs(got - ref).max() <= 2.0  # same map; only 8-bit weight rounding differs


def test_images_stored_at_another_size_are_resized_to_res() -> None:
    """A smooth ramp stored at 32 x 40 comes out res x res, still the same ramp."""
    ramp = np.linspace(0, 255, 40)[None, :, None].repeat(32, 0)
    bg = np.repeat(ramp, 3, 2).astype(np.uint8)
    images = [[bg], [np.repeat(ramp, 3, 2).astype(np.uint8)],
              [(ramp >= 128).astype(np.uint8) * 255], [ramp.astype(np.uint8)]]
    out = CpuWarp(RES)(*images, [IDENT], [ZERO_GRID])
    expect = np.interp((np.arange(RES) + 0.5) * 40 / RES - 0.5, np.arange(40),
                       np.linspace(0, 255, 40))
    for k, (img,) in enumerate(out):
        assert img.shape == (RES, RES, images[k][0].shape[2])
        if k != 2:  # bilinear: the resampled ramp
            assert np.abs(img[RES // 2, :, 0] - expect).max() <= 1.5
    assert set(np.unique(out[2][0])) <= {0, 255}  # nearest: still binary


def test_output_buffers_are_reused_without_leaking_into_earlier_batches(
        pattern_shards: Path) -> None:
    """Batches taken one after another keep their own pixels (the warp reuses its buffers)."""
    cfg = LoaderConfig(pattern_shards, res=RES, batch_size=4, augment=GEOMETRY, shuffle=False,
                       seed=2, prefetch=3)
    first = [{k: v.clone() for k, v in b.items()} for b in build_loader(cfg)]
    again = list(build_loader(cfg))
    assert len(first) == 4
    for a, b in zip(first, again, strict=True):
        for key in ("bg", "fgbg", "mask", "depth"):
            assert torch.equal(a[key], b[key]), key
    assert not torch.equal(first[0]["bg"], first[1]["bg"])


def test_draws_follow_dali_transforms_and_the_probabilities() -> None:
    """The numpy draws compose flip, rotate-90 and shift-scale-rotate exactly as
    `fn.transforms` does, and each op fires with its probability."""
    cfg = AugmentConfig.original()
    rng = np.random.default_rng(0)
    u = [rng.random(draw_size(cfg)).astype(np.float32) for _ in range(6)]
    u[0][:4] = [0.0, 0.0, 0.5, 0.0]  # flip, rotate by 180, shift-scale-rotate
    matrix, drawn, ssr, color, grid = Draws(cfg, RES)(u)
    slot = {name: np.array([x[i] for x in u], np.float64) for i, name in enumerate(SLOTS)}
    c = [RES / 2, RES / 2]

    @pipeline_def(batch_size=len(u), num_threads=1, device_id=None, seed=0)
    def pipe():
        def arg(values: np.ndarray):
            return fn.external_source(source=_const([np.array(v, np.float32) for v in values]),
                                      batch=True)
        flip, rot, on = (arg(slot[k] < p) for k, p in (
            ("flip", cfg.p_hflip), ("rot90", cfg.p_rot90), ("ssr", cfg.p_shift_scale_rotate)))
        quarter = arg(np.minimum(np.floor(slot["quarter"] * 3), 2) + 1)
        zoom = 1 + on * arg(slot["zoom"] * 2 * cfg.scale - cfg.scale)
        shift = fn.stack(*(on * arg((slot[k] * 2 - 1) * cfg.shift * RES)
                           for k in ("shift_x", "shift_y")))
        return fn.transforms.combine(
            fn.transforms.scale(scale=fn.stack(1 - 2 * flip, flip * 0 + 1), center=c),
            fn.transforms.rotation(angle=rot * quarter * 90, center=c),
            fn.transforms.scale(scale=fn.stack(zoom, zoom), center=c),
            fn.transforms.rotation(angle=on * arg((slot["angle"] * 2 - 1) * cfg.rotate),
                                   center=c),
            fn.transforms.translation(offset=shift))

    p = pipe()
    p.build()
    ref = [np.asarray(m) for m in p.run()[0]]
    for mine, theirs in zip(matrix, ref, strict=True):
        assert np.abs(mine - theirs).max() < 1e-3
    assert bool(drawn[0]) and bool(ssr[0]) and color[0].shape == (4,)
    assert grid[0].shape == (2, cfg.grid_steps)
    many = Draws(cfg, RES)([x.astype(np.float32) for x in rng.random((4000, draw_size(cfg)))])
    flips = np.mean([m[0, 0] < 0 if abs(m[0, 1]) < 1e-6 else m[0, 1] * m[1, 0] > 0
                     for m, s in zip(many[0], many[2], strict=True) if not s])
    assert abs(flips - cfg.p_hflip) < 0.05
    assert abs(np.mean(many[2]) - cfg.p_shift_scale_rotate) < 0.03
    assert abs(np.mean([np.any(g) for g in many[4]]) - cfg.p_grid) < 0.03
    colour = np.mean([not np.allclose(x, IDENTITY) for x in many[3]])
    assert abs(colour - (1 - (1 - cfg.p_color) * (1 - cfg.p_gray))) < 0.03


def test_gpu_geometry_branch_warps_like_the_cpu_warp() -> None:
    """graph.geometry (the GPU backend's conditional warps, run here on CPU images) and the
    CPU warp give the same images for the same draws."""
    cfg = replace(AugmentConfig.original(), p_grid=0.0, p_rot90=0.3, p_shift_scale_rotate=0.3)
    images = _four(3, 16)

    @pipeline_def(batch_size=16, num_threads=1, device_id=None, seed=4,
                  enable_conditionals=True)
    def pipe():
        ims = {k: fn.external_source(source=_const(images[i]), batch=True, layout="HWC")
               for i, k in enumerate(("bg", "fgbg", "mask", "depth"))}
        shapes = {k: v.shape() for k, v in ims.items()}
        drawn = aug.dali_draws(cfg, RES)
        out = graph.geometry(ims, shapes, drawn, RES)
        return drawn["matrix"], drawn["drawn"], out["bg"], out["fgbg"], out["mask"], out["depth"]

    p = pipe()
    p.build()
    matrices, drawn, *warped = ([np.asarray(t) for t in node] for node in p.run())
    assert 0 < sum(bool(d) for d in drawn) < 16  # some samples warped, some routed around
    cpu = CpuWarp(RES)(*images, matrices, [ZERO_GRID] * 16)
    for k, key in enumerate(("bg", "fgbg", "mask", "depth")):
        for mine, theirs in zip(cpu[k], warped[k], strict=True):
            err = np.abs(mine.astype(int) - theirs.astype(int)).max()
            assert err == 0 if key == "mask" else err <= 2, key


@pytest.mark.parametrize("quarter", [0, 1, 3])
def test_grid_after_a_flip_or_quarter_turn_matches_the_2d_resampling(quarter: int) -> None:
    """Permutation + grid samples take the separable path; it agrees with the general one."""
    c = RES / 2.0
    lin = np.linalg.matrix_power(np.array([[0.0, -1.0], [1.0, 0.0]]), quarter)
    lin = lin @ np.diag([-1.0, 1.0])
    matrix = np.hstack([lin, (np.array([c, c]) - lin @ [c, c])[:, None]]).astype(np.float32)
    nudged = matrix.copy()
    nudged[:, 2] -= lin @ [2e-3, 2e-3]
    grid = np.random.default_rng(quarter).uniform(-0.3, 0.3, (2, 5)).astype(np.float32)
    images = _four(5 + quarter, 1)
    fast = CpuWarp(RES)(*images, [matrix], [grid])
    general = CpuWarp(RES)(*images, [nudged], [grid])
    plain = CpuWarp(RES)(*images, [matrix], [ZERO_GRID])
    for k in range(4):
        a, b = fast[k][0].astype(int), general[k][0].astype(int)
        if k == 2:  # the mask: nearest, a 2e-3 px nudge may move a pixel on a block edge
            assert np.mean(a != b) < 0.01
        else:
            assert np.abs(a - b).max() <= 2
        assert np.abs(a - plain[k][0].astype(int)).mean() > 5  # the grid did distort
