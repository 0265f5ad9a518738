"""tools/depthcheck.py: regions, alignment and tallies on hand-made maps, and the report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from .conftest import load_tool

depthcheck = load_tool("depthcheck")
REGION = {name: i for i, name in enumerate(depthcheck.REGIONS)}


def test_jumps_are_occlusions_not_corners() -> None:
    depth = np.full((4, 6), 3.0)
    depth[:, 3:] = 5.0  # furniture at 3 m in front of a wall at 5 m
    surface = np.full((4, 6), 5, dtype=np.int8)
    surface[:, 3:] = 4
    got = depthcheck.jumps(depth, surface)
    assert got[:, 2:4].all() and not got[:, [0, 1, 4, 5]].any()
    # a corner: another surface, continuous depth; a steep floor: one surface
    corner = np.where(np.arange(6) < 3, 4.0, 4.1) * np.ones((4, 1))
    steep = np.linspace(2, 8, 4)[:, None] * np.ones((1, 6))
    assert not depthcheck.jumps(corner, surface).any()
    assert not depthcheck.jumps(steep, np.zeros((4, 6), dtype=np.int8)).any()


def test_region_map_puts_edges_before_the_object_and_jumps_before_surfaces() -> None:
    mask = np.zeros((8, 8), dtype=bool)
    mask[3:6, 3:6] = True
    depth = np.full((8, 8), 6.0)
    surface = np.zeros((8, 8), dtype=np.int8)  # floor
    surface[:2] = 4  # back wall
    surface[:, :1], depth[:, :1] = 5, 2.0  # furniture in front, along column 0
    regions = depthcheck.region_map(mask, depth, surface)
    assert regions[4, 4] == REGION["object"]
    assert regions[3, 3] == REGION["object_edge"] and regions[2, 4] == REGION["object_edge"]
    assert regions[5, 1] == REGION["depth_edge"] and regions[7, 2] == REGION["depth_edge"]
    assert regions[7, 7] == REGION["floor"] and regions[0, 7] == REGION["wall_back"]


def test_aligned_fits_scale_and_shift_exactly() -> None:
    true = np.linspace(0, 1, 16).reshape(4, 4)
    assert np.allclose(depthcheck.aligned(3 * true - 0.5, true), true)


def test_tally_splits_the_squared_error_by_region() -> None:
    true = np.linspace(0, 1, 16).reshape(4, 4)
    regions = np.full((4, 4), REGION["floor"], dtype=np.int8)
    regions[0] = REGION["wall_back"]
    pred = true.copy()
    pred[0] += 0.2  # error only on the back wall row
    tally = depthcheck.DepthTally()
    tally.add(pred, true, regions)
    fig = tally.figures()
    assert fig["depth_rmse"] == pytest.approx(np.sqrt(4 * 0.04 / 16))
    assert fig["regions"]["wall_back"]["error_share"] == pytest.approx(1.0)
    assert fig["regions"]["wall_back"]["rmse"] == pytest.approx(0.2)
    assert fig["regions"]["floor"]["rmse"] == 0.0
    assert fig["regions"]["floor"]["pixel_share"] == pytest.approx(0.75)
    shifted = depthcheck.DepthTally()
    shifted.add(true * 0.5 + 0.1, true, regions)  # wrong scale, right structure
    assert shifted.figures()["depth_rmse"] > 0.1
    assert shifted.figures()["depth_rmse_aligned"] == pytest.approx(0.0, abs=1e-9)


def test_depthcheck_end_to_end(tmp_path: Path, tiny_checkpoint: Path) -> None:
    out = tmp_path / "dc.json"
    code = depthcheck.main(["--checkpoint", str(tiny_checkpoint), "--rooms", "2", "--fgs", "2",
                            "--device", "cpu", "--json", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    assert report["samples"] == 4
    regions = report["regions"]
    assert sum(r["pixel_share"] for r in regions.values()) == pytest.approx(1.0)
    assert sum(r["error_share"] for r in regions.values()) == pytest.approx(1.0)
    assert {"object", "floor"} <= set(regions)
    assert report["depth_rmse_aligned"] <= report["depth_rmse"] + 1e-9


def test_depthcheck_bad_counts_are_one_line(tmp_path: Path, capsys) -> None:
    code = depthcheck.main(["--checkpoint", str(tmp_path / "none.pt"), "--fgs", "0"])
    assert code == 2 and "--rooms" in capsys.readouterr().err
