"""Procedural textures and colours shared by backgrounds and foregrounds (numpy, vectorised).

Both sides draw colours from the same indoor palette, so foreground objects often share the
background's colours and a model cannot find them by colour alone.
"""

from __future__ import annotations

import colorsys

import numpy as np

# (hue range, saturation range, value range) of indoor materials: walls, wood, fabric, metal.
_PALETTE = (
    ((0.07, 0.13), (0.08, 0.30), (0.70, 0.95)),  # beige / cream walls
    ((0.00, 1.00), (0.00, 0.06), (0.35, 0.95)),  # greys and whites
    ((0.05, 0.10), (0.35, 0.70), (0.25, 0.65)),  # wood browns
    ((0.50, 0.65), (0.15, 0.45), (0.40, 0.85)),  # blues
    ((0.25, 0.40), (0.15, 0.45), (0.35, 0.80)),  # greens
    ((0.95, 1.05), (0.25, 0.65), (0.40, 0.85)),  # reds / pinks
    ((0.70, 0.85), (0.15, 0.40), (0.35, 0.80)),  # purples
    ((0.10, 0.17), (0.45, 0.85), (0.60, 0.95)),  # yellows / ochres
)


def palette_colour(rng: np.random.Generator, family: int | None = None) -> np.ndarray:
    """An RGB colour (float32 in [0, 1]) from the indoor palette, optionally from one family."""
    fam = _PALETTE[int(rng.integers(len(_PALETTE))) if family is None else family]
    h = rng.uniform(*fam[0]) % 1.0
    s = rng.uniform(*fam[1])
    v = rng.uniform(*fam[2])
    return np.asarray(colorsys.hsv_to_rgb(h, s, v), dtype=np.float32)


def jitter_colour(rng: np.random.Generator, rgb: np.ndarray, amount: float = 0.08) -> np.ndarray:
    """A nearby colour (same material, another instance)."""
    return np.clip(rgb * rng.uniform(1 - amount, 1 + amount, 3), 0, 1).astype(np.float32)


class Noise:
    """Smooth 2-D value noise on a random lattice; `fbm` sums octaves. Deterministic per rng."""

    def __init__(self, rng: np.random.Generator, size: int = 128) -> None:
        self.size = size
        self.table = rng.random((size, size), dtype=np.float32) * 2 - 1

    def __call__(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Noise in [-1, 1] at continuous lattice coordinates (x, y)."""
        xf, yf = np.floor(x), np.floor(y)
        tx, ty = (x - xf).astype(np.float32), (y - yf).astype(np.float32)
        tx = tx * tx * (3 - 2 * tx)
        ty = ty * ty * (3 - 2 * ty)
        n = self.size
        x0 = xf.astype(np.int64) % n
        y0 = yf.astype(np.int64) % n
        x1, y1 = (x0 + 1) % n, (y0 + 1) % n
        t = self.table
        top = t[y0, x0] * (1 - tx) + t[y0, x1] * tx
        bot = t[y1, x0] * (1 - tx) + t[y1, x1] * tx
        return top * (1 - ty) + bot * ty

    def fbm(self, x: np.ndarray, y: np.ndarray, octaves: int = 3) -> np.ndarray:
        """Fractal sum of `octaves` octaves, roughly in [-1, 1]."""
        total = np.zeros(np.broadcast(x, y).shape, dtype=np.float32)
        amp, freq, norm = 1.0, 1.0, 0.0
        for k in range(octaves):
            # Offsets decorrelate octaves that share one lattice.
            total += amp * self(x * freq + 17.3 * k, y * freq + 31.7 * k)
            norm += amp
            amp *= 0.5
            freq *= 2.0
        return total / norm


def smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    """Hermite step from 0 at e0 to 1 at e1."""
    t = np.clip((x - e0) / (e1 - e0), 0, 1)
    return t * t * (3 - 2 * t)


def cell_hash(i: np.ndarray, j: np.ndarray, salt: int) -> np.ndarray:
    """A deterministic pseudo-random value in [0, 1) per integer cell (i, j)."""
    h = (i.astype(np.int64) * 73856093) ^ (j.astype(np.int64) * 19349663) ^ (salt * 83492791)
    h = (h ^ (h >> 13)) * 1274126177
    return ((h ^ (h >> 16)) & 0xFFFF).astype(np.float32) / 65536.0
