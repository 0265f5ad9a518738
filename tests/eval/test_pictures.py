"""The pictures of eval and predict: column titles that scale with the cell, a depth colour bar."""

from __future__ import annotations

import numpy as np
from PIL import Image

from depthkit.core.images import colorize_depth, make_grid
from depthkit.eval.evaluate import EvalResult, write_grid
from depthkit.eval.pictures import GRID_TITLES, side_by_side

GRAY = 200  # tiles of plain gray: text is black, the colour bar the only saturated pixels


def _tiles(res: int, n: int) -> list[np.ndarray]:
    return [np.full((res, res, 3), GRAY, np.uint8) for _ in range(n)]


def _title_ink_height(img: Image.Image) -> int:
    """Rows holding black text above the first gray tile."""
    a = np.asarray(img).astype(int)
    first_tile = int(np.argmax((np.abs(a - GRAY).max(axis=2) < 3).mean(axis=1) > 0.5))
    dark = (a[:first_tile].max(axis=2) < 80).any(axis=1)
    return int(dark.sum())


def _bar_row(img: Image.Image) -> np.ndarray:
    """The lowest row whose saturated pixels span most of the width: the colour bar."""
    a = np.asarray(img).astype(int)
    sat = (a.max(axis=2) - a.min(axis=2)) > 60
    rows = np.nonzero(sat.sum(axis=1) > a.shape[1] // 2)[0]
    assert rows.size, "no colour bar"
    row = a[rows[-1]]
    return row[np.nonzero(sat[rows[-1]])[0]]


def _assert_turbo_ramp(img: Image.Image) -> None:
    ramp = _bar_row(img)
    near, mid, far = (colorize_depth(np.array([[t]]))[0, 0].astype(int) for t in (0.02, 0.5, 0.98))
    assert np.abs(ramp[0] - near).max() <= 40  # near end: dark blue
    assert np.abs(ramp[len(ramp) // 2] - mid).max() <= 40
    assert np.abs(ramp[-1] - far).max() <= 40  # far end: dark red


def test_grid_title_height_scales_with_the_cell() -> None:
    small = make_grid([_tiles(64, 7)], GRID_TITLES, cell=64)
    large = make_grid([_tiles(64, 7)], GRID_TITLES, cell=224)
    h_small, h_large = _title_ink_height(small), _title_ink_height(large)
    assert h_small >= 8
    assert h_large >= 0.07 * 224 and h_large >= 1.8 * h_small


def test_grid_has_a_depth_colour_bar_only_when_asked() -> None:
    with_bar = make_grid([_tiles(64, 7)], GRID_TITLES, cell=96, depth_bar=True)
    _assert_turbo_ramp(with_bar)
    a = np.asarray(make_grid([_tiles(64, 7)], GRID_TITLES, cell=96)).astype(int)
    assert ((a.max(axis=2) - a.min(axis=2)) <= 60).all()


def test_eval_grid_file_has_titles_and_the_bar(tmp_path) -> None:
    path = tmp_path / "grid.png"
    write_grid(EvalResult(metrics={}, info={}, grid_rows=[_tiles(224, 7)] * 2), path)
    with Image.open(path) as img:
        img = img.convert("RGB")
    assert _title_ink_height(img) >= 0.07 * 224
    _assert_turbo_ramp(img)


def test_side_by_side_has_titles_and_the_bar() -> None:
    gray = np.full((48, 80, 3), GRAY, np.uint8)
    mask = np.zeros((48, 80), bool)
    depth = np.full((48, 80), 0.5)  # a flat mid-depth tile: the bar still spans near to far
    img = side_by_side(gray, gray, mask, depth)
    a = np.asarray(img).astype(int)
    assert (a[: a.shape[0] // 4].max(axis=2) < 80).any()  # black title text on top
    ramp = _bar_row(img)
    assert len(ramp) > img.width // 2
    _assert_turbo_ramp(img)
