"""Room surface materials in world coordinates: floors (planks, tiles, carpet, concrete, rugs)
and walls (paint, wallpaper, windows, doors, frames, skirting)."""

from __future__ import annotations

import numpy as np

from depthkit.synth.texture import Noise, cell_hash, jitter_colour, palette_colour, smoothstep


def floor_albedo(rng: np.random.Generator, noise: Noise, x: np.ndarray, z: np.ndarray,
                 width: float, depth: float) -> np.ndarray:
    """Wood planks, tiles, carpet or concrete, in world coordinates (x, z metres)."""
    kind = rng.choice(["planks", "tiles", "carpet", "concrete"], p=[0.4, 0.25, 0.2, 0.15])
    base = palette_colour(rng, family=int(rng.choice([2, 2, 1, 0, 3, 5])))
    if kind == "planks":
        pw, pl = rng.uniform(0.1, 0.22), rng.uniform(0.8, 2.0)
        i = np.floor(x / pw)
        j = np.floor((z + cell_hash(i, i, 7) * pl) / pl)
        tone = 0.8 + 0.4 * cell_hash(i, j, 1)
        grain = 0.08 * noise(x * 40, z * 3)
        seam = 1 - 0.35 * (1 - smoothstep(0.0, 0.012, np.minimum(x % pw, pw - x % pw)))
        a = base[None] * (tone + grain)[..., None] * seam[..., None]
    elif kind == "tiles":
        ts = rng.uniform(0.3, 0.6)
        other = jitter_colour(rng, base, 0.25) if rng.random() < 0.5 else base
        i, j = np.floor(x / ts), np.floor(z / ts)
        checker = ((i + j) % 2 == 0)[..., None]
        col = np.where(checker, base[None], other[None])
        gx = np.minimum(x % ts, ts - x % ts)
        gz = np.minimum(z % ts, ts - z % ts)
        grout = smoothstep(0.004, 0.012, np.minimum(gx, gz))[..., None]
        a = col * (0.92 + 0.08 * noise(x * 8, z * 8))[..., None]
        a = a * grout + (1 - grout) * 0.55 * base[None]
    elif kind == "carpet":
        a = base[None] * (0.9 + 0.12 * noise.fbm(x * 30, z * 30, 2))[..., None]
    else:
        a = base[None] * (0.85 + 0.15 * noise.fbm(x * 1.5, z * 1.5, 4))[..., None]
    if rng.random() < 0.5:  # a rug
        rw, rd = rng.uniform(1.2, 2.5), rng.uniform(1.0, 2.0)
        rx, rz = rng.uniform(0.1, 0.9) * width, rng.uniform(0.3, 0.8) * depth
        inside = (np.abs(x - rx) < rw / 2) & (np.abs(z - rz) < rd / 2)
        rc = palette_colour(rng)
        border = (np.abs(x - rx) > rw / 2 - 0.12) | (np.abs(z - rz) > rd / 2 - 0.12)
        pattern = 0.85 + 0.15 * np.sign(np.sin((x - rx) * rng.uniform(8, 20)))
        rug = np.where(border[..., None], 0.6 * rc[None], rc[None] * pattern[..., None])
        a = np.where(inside[..., None], rug, a)
    return a


def wall_albedo(rng: np.random.Generator, noise: Noise, s: np.ndarray, y: np.ndarray,
                length: float, ceiling: float, base: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Paint or wallpaper with windows, doors, frames and a skirting board.

    (s, y) are coordinates along the wall and up; returns (albedo, emission) where
    emission is light from windows (bright sky, not lit by the room).
    """
    a = base[None] * (0.94 + 0.06 * noise.fbm(s * 2, y * 2, 3))[..., None]
    if rng.random() < 0.3:  # striped wallpaper
        period = rng.uniform(0.1, 0.4)
        stripe = (np.sin(s * 2 * np.pi / period) > 0)[..., None]
        a = np.where(stripe, a, a * rng.uniform(0.8, 0.95))
    emission = np.zeros(a.shape, dtype=np.float32)
    for _ in range(int(rng.integers(0, 4))):
        kind = rng.choice(["window", "door", "frame"], p=[0.4, 0.25, 0.35])
        if kind == "window":
            w, h, y0 = rng.uniform(0.8, 1.6), rng.uniform(1.0, 1.5), rng.uniform(0.7, 1.0)
        elif kind == "door":
            w, h, y0 = rng.uniform(0.8, 1.0), min(2.1, ceiling - 0.1), 0.0
        else:
            w, h, y0 = rng.uniform(0.3, 1.0), rng.uniform(0.3, 0.8), rng.uniform(1.2, 1.6)
        s0 = rng.uniform(0.1, max(0.11, length - w - 0.1))
        inner = (s > s0) & (s < s0 + w) & (y > y0) & (y < y0 + h)
        rim = 0.05
        core = (s > s0 + rim) & (s < s0 + w - rim) & (y > y0 + rim) & (y < y0 + h - rim)
        if kind == "window":
            sky = np.stack([0.55 + 0.2 * (y - y0) / h, 0.72 + 0.15 * (y - y0) / h,
                            np.full_like(y, 0.95)], -1).astype(np.float32)
            mull = (np.abs(s - (s0 + w / 2)) < 0.02) | (np.abs(y - (y0 + h / 2)) < 0.02)
            glass = core & ~mull
            a = np.where(inner[..., None], np.float32(0.9), a)
            emission = np.where(glass[..., None], sky * rng.uniform(1.0, 1.4), emission)
            a = np.where(glass[..., None], 0.0, a)
        elif kind == "door":
            dc = palette_colour(rng, family=int(rng.choice([1, 2])))
            panel = 0.92 + 0.08 * (core & (np.abs(s - s0 - w / 2) > 0.08))
            a = np.where(inner[..., None], dc[None] * panel[..., None], a)
        else:
            fc = palette_colour(rng, family=int(rng.choice([1, 2])))
            art = palette_colour(rng)
            art2 = palette_colour(rng)
            blocks = noise((s - s0) * rng.uniform(3, 9), (y - y0) * rng.uniform(3, 9)) > 0
            pic = np.where(blocks[..., None], art[None], art2[None])
            a = np.where(inner[..., None], fc[None] * 0.6, a)
            a = np.where(core[..., None], pic, a)
    board = y < rng.uniform(0.06, 0.12)
    board_col = np.float32(0.92) if rng.random() < 0.6 else base * 0.5
    a = np.where(board[..., None], board_col, a)
    return a, emission
