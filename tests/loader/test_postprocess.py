"""The torch steps after DALI run on whole batches without a host sync, and give what picking
out the samples that drew colour or grid gave."""

from __future__ import annotations

import math

import pytest
import torch

from depthkit.loader.augment import AugmentConfig
from depthkit.loader.gridwarp import grid_distort
from depthkit.loader.photometric import IDENTITY, YIQ, ColorSpace, apply_color
from depthkit.loader.postprocess import NORMALISED, PostProcess
from depthkit.shard import schema

NORM = {"bg": {"mean": [0.49, 0.5, 0.48], "std": [0.28, 0.27, 0.31]},
        "fgbg": {"mean": [0.5, 0.51, 0.47], "std": [0.29, 0.28, 0.3]}}
B, RES, STEPS = 6, 16, 5
PLAIN = (0, 2, 4)  # samples that drew no colour
FLAT = (0, 1, 3)  # samples that drew no grid


def _outputs(device: str = "cpu") -> dict[str, torch.Tensor]:
    """DALI's outputs for one batch: normalised bg/fgbg, uint8 mask, unit depth, int32 bgid,
    colour draws (IDENTITY for PLAIN) and grid draws (zero for FLAT)."""
    g = torch.Generator().manual_seed(0)
    out = {}
    for key in NORMALISED:
        u = torch.randint(0, 256, (B, 3, RES, RES), generator=g).float() / 255
        mu, sd = (torch.tensor(NORM[key][k]).view(1, 3, 1, 1) for k in ("mean", "std"))
        out[key] = (u - mu) / sd
    out["mask"] = (torch.rand(B, 1, RES // 4, RES // 4, generator=g) > 0.5).to(torch.uint8) * 255
    out["mask"] = out["mask"].repeat_interleave(4, 2).repeat_interleave(4, 3)
    out["depth"] = torch.rand(B, 1, RES, RES, generator=g)
    out["bgid"] = torch.arange(B, dtype=torch.int32).view(B, 1)
    color = torch.stack([torch.empty(B).uniform_(0.7, 1.3, generator=g),
                         torch.empty(B).uniform_(0.7, 1.3, generator=g),
                         torch.empty(B).uniform_(-20, 20, generator=g),
                         torch.empty(B).uniform_(0.0, 1.3, generator=g)], 1)
    color[1, 3] = 0.0  # to gray
    color[list(PLAIN)] = torch.tensor(IDENTITY)
    grid = torch.empty(B, 2, STEPS).uniform_(-0.3, 0.3, generator=g)
    grid[list(FLAT)] = 0.0
    out.update(color=color, grid=grid)
    return {k: v.to(device) for k, v in out.items()}


def _old_apply_color(x: torch.Tensor, params: torch.Tensor, stats: dict) -> torch.Tensor:
    """The float64 host-side colour maths of the selective method."""
    p = params.double()
    k, c, hue, sat = p[:, 0], p[:, 1], p[:, 2] * (math.pi / 180.0), p[:, 3]
    rot = torch.zeros(len(p), 3, 3, dtype=torch.float64)
    rot[:, 0, 0] = 1.0
    rot[:, 1, 1], rot[:, 1, 2] = sat * torch.cos(hue), -sat * torch.sin(hue)
    rot[:, 2, 1], rot[:, 2, 2] = sat * torch.sin(hue), sat * torch.cos(hue)
    yiq = torch.tensor(YIQ, dtype=torch.float64)
    a = (k * c)[:, None, None] * (torch.linalg.inv(yiq) @ rot @ yiq)
    b = (k * 0.5 * (1.0 - c))[:, None].expand(-1, 3)
    mu, sd = (torch.tensor(stats[n], dtype=torch.float64) for n in ("mean", "std"))
    a_n = (a * sd[None, None, :] / sd[None, :, None]).float()
    b_n = (((a @ mu) + b - mu) / sd).float()
    out = torch.baddbmm(b_n[:, :, None], a_n, x.reshape(len(x), 3, -1)).view_as(x)
    lo, hi = (-mu / sd).float().view(1, 3, 1, 1), ((1.0 - mu) / sd).float().view(1, 3, 1, 1)
    return torch.maximum(torch.minimum(out, hi), lo)


def _selective(out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The method the whole-batch steps replaced: recolour and grid-distort only the samples
    whose draw is not the identity (found on the host: nonzero, index_select, index_copy)."""
    batch = {k: out[k] for k in ("bg", "fgbg", "depth")}
    batch["mask"] = (out["mask"] >= schema.MASK_THRESHOLD_U8).float()
    color = out["color"]
    recolor = (color != torch.tensor(IDENTITY)).any(1)
    if bool(recolor.any()):
        idx = recolor.nonzero().reshape(-1)
        for key in NORMALISED:
            part = _old_apply_color(batch[key].index_select(0, idx), color[recolor], NORM[key])
            batch[key] = batch[key].index_copy(0, idx, part)
    grid = out["grid"]
    drew = grid.flatten(1).abs().sum(1) > 0
    if bool(drew.any()):
        idx = drew.nonzero().reshape(-1)
        names = ("bg", "fgbg", "mask", "depth")
        stacked = torch.cat([batch[k].index_select(0, idx) for k in names], dim=1)
        parts = torch.split(grid_distort(stacked, grid.index_select(0, idx)), [3, 3, 1, 1], 1)
        for key, part in zip(names, parts, strict=True):
            if key == "mask":
                part = (part >= schema.MASK_THRESHOLD).float()
            batch[key] = batch[key].index_copy(0, idx, part)
    return batch


def _post() -> PostProcess:
    return PostProcess(NORM, AugmentConfig(), gpu=True)


def test_whole_batch_equals_the_selective_method() -> None:
    out = _outputs()
    new, old = _post()(out), _selective(out)
    assert torch.equal(new["mask"], old["mask"])
    assert set(new["mask"].unique().tolist()) == {0.0, 1.0}
    for key in ("bg", "fgbg", "depth"):
        assert torch.allclose(new[key], old[key], atol=1e-5), key
    for key in ("bg", "fgbg"):
        assert torch.allclose(new[key][0], out[key][0], atol=1e-5)  # drew neither
        assert not torch.allclose(new[key][5], out[key][5], atol=1e-2)  # drew both
    assert torch.equal(new["bgid"], torch.arange(B))


def test_identity_draws_leave_the_batch_unchanged() -> None:
    out = _outputs()
    out["color"][:] = torch.tensor(IDENTITY)
    out["grid"][:] = 0.0
    new = _post()(out)
    for key in ("bg", "fgbg", "depth"):
        assert torch.allclose(new[key], out[key], atol=1e-5), key
    assert torch.equal(new["mask"], (out["mask"] >= schema.MASK_THRESHOLD_U8).float())


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_post_processing_does_not_sync(device: str, count_syncs) -> None:
    """The GPU branch (colour + torch grid) on CPU tensors and on meta tensors (any read back
    to the host would fail there), the draws also coming from the host as DALI gives them."""
    post = _post()
    out = _outputs(device)
    post(out)  # builds the constants for this device
    on_host = _outputs()
    host_draws = {**out, "color": on_host["color"], "grid": on_host["grid"]}
    for batch in (out, host_draws):
        with count_syncs() as c:
            new = post(batch)
        assert c.ops == []
        assert new["bg"].device.type == device and new["mask"].shape == (B, 1, RES, RES)


def test_float32_colour_matrices_are_accurate() -> None:
    out = _outputs()
    x, params = out["bg"], out["color"]
    f32 = apply_color(x, params, ColorSpace.make(**NORM["bg"]))
    f64 = apply_color(x.double(), params, ColorSpace.make(**NORM["bg"], dtype=torch.float64))
    assert (f32.double() - f64).abs().max() < 1e-5
