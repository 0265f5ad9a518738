"""Procedural cut-outs: the freeform kind brings the holes and thin parts real cut-outs have."""

from __future__ import annotations

import numpy as np

from depthkit.synth.sprites import KIND_WEIGHTS, KINDS, render_sprite
from depthkit.synth.sprites import _freeform as freeform


def _holes(inside: np.ndarray) -> np.ndarray:
    """Background pixels not connected to the border (4-connectivity): see-through holes."""
    outside = ~inside
    reach = np.zeros_like(outside)
    reach[0, :], reach[-1, :], reach[:, 0], reach[:, -1] = (
        outside[0, :], outside[-1, :], outside[:, 0], outside[:, -1])
    while True:
        grown = reach.copy()
        grown[1:] |= reach[:-1]
        grown[:-1] |= reach[1:]
        grown[:, 1:] |= reach[:, :-1]
        grown[:, :-1] |= reach[:, 1:]
        grown &= outside
        if np.array_equal(grown, reach):
            return outside & ~reach
        reach = grown


def _thin_columns(inside: np.ndarray, max_width: int) -> int:
    """Rows runs of foreground at most max_width pixels wide (legs, branches), counted."""
    runs = 0
    for row in inside:
        edges = np.flatnonzero(np.diff(np.r_[0, row.astype(np.int8), 0]))
        runs += int(np.sum(edges[1::2] - edges[::2] <= max_width))
    return runs


def test_freeform_cutouts_have_holes_and_thin_parts():
    sprites = [freeform(np.random.default_rng(seed), 128) for seed in range(12)]
    with_holes = sum(_holes(s.alpha >= 0.5).sum() >= 4 for s in sprites)
    with_thin = sum(_thin_columns(s.alpha >= 0.5, 4) >= 20 for s in sprites)
    assert with_holes >= 4 and with_thin >= 4
    for s in sprites:  # alpha is a clean 0..1 cut-out that reaches the floor row
        assert s.alpha.min() == 0 and s.alpha.max() == 1
        assert (s.alpha[-1] >= 0.5).any()


def test_freeform_is_drawn_among_the_kinds():
    assert dict(zip(KINDS, KIND_WEIGHTS, strict=True))["freeform"] >= 0.1
    kinds = {render_sprite(np.random.default_rng(seed), 64).kind for seed in range(40)}
    assert "freeform" in kinds and len(kinds) >= 5
