"""tools/synthcheck.py: error bands on hand-made masks, and the report end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .conftest import load_tool

synthcheck = load_tool("synthcheck")


def _square() -> np.ndarray:
    """6x6 mask with a 2x2 object at rows 2-3, columns 2-3."""
    true = np.zeros((6, 6), dtype=bool)
    true[2:4, 2:4] = True
    return true


def test_edge_band_is_both_sides_of_the_boundary() -> None:
    band = synthcheck.edge_band(_square())
    # all 4 object pixels touch background; 8 background pixels touch the object (4-neighbours)
    assert band.sum() == 12
    assert band[2:4, 2:4].all()
    assert band[1, 2] and band[4, 3] and band[2, 1] and band[3, 4]
    assert not band[1, 1]  # diagonal only: not a 4-neighbour


def test_error_bands_count_by_distance_to_the_edge() -> None:
    true = _square()
    pred = true.copy()
    pred[2, 2] = False  # a missed object pixel: on the edge band
    pred[1, 1] = True  # diagonal to the object: next to the band
    pred[0, 5] = True  # far away
    assert synthcheck.error_bands(pred, true) == {"edge": 1, "near": 1, "far": 1}
    assert synthcheck.error_bands(true, true) == {"edge": 0, "near": 0, "far": 0}


def test_groups_name_every_split() -> None:
    names = synthcheck.groups_of("lamp", True, False, 10, 60, seen=False)
    assert names == ["all", "kind:lamp", "paste:hard", "camouflage:no", "size:small",
                     "cutout:unseen"]
    assert "cutout:seen" not in synthcheck.groups_of("box", False, True, 100, 60, seen=None)


def test_synthcheck_end_to_end(tmp_path: Path, tiny_checkpoint: Path) -> None:
    out = tmp_path / "sc.json"
    code = synthcheck.main(["--checkpoint", str(tiny_checkpoint), "--rooms", "2", "--fgs", "3",
                            "--trained-fgs", "2", "--device", "cpu", "--json", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    groups = report["groups"]
    assert report["samples"] == 6 == groups["all"]["samples"]
    assert groups["cutout:seen"]["samples"] == 4 and groups["cutout:unseen"]["samples"] == 2
    assert sum(v["samples"] for k, v in groups.items() if k.startswith("kind:")) == 6
    assert sum(v["samples"] for k, v in groups.items() if k.startswith("paste:")) == 6
    if report["wrong_pixels"]:
        assert abs(sum(report["wrong_share"].values()) - 1) < 1e-9
    assert report["mask_iou_if_edge_band_right"] >= report["mask_iou"]


def test_synthcheck_bad_counts_are_one_line(tmp_path: Path, capsys) -> None:
    code = synthcheck.main(["--checkpoint", str(tmp_path / "none.pt"), "--rooms", "0"])
    assert code == 2 and "--rooms" in capsys.readouterr().err
