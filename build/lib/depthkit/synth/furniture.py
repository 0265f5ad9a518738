"""Furniture for the rendered rooms: axis-aligned boxes for cabinets, shelves, tables and sofas."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from depthkit.synth.texture import jitter_colour, palette_colour


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in room coordinates (metres; y up, floor at y = 0)."""

    lo: tuple[float, float, float]
    hi: tuple[float, float, float]
    colour: np.ndarray
    texture: str  # "wood" | "fabric" | "paint"


def furnish(rng: np.random.Generator, width: float, depth: float) -> list[Box]:
    """A few furniture-like boxes: cabinets and shelves against walls, tables, sofas."""
    boxes: list[Box] = []
    for _ in range(int(rng.integers(1, 5))):
        kind = rng.choice(["cabinet", "shelf", "table", "sofa"])
        colour = palette_colour(rng, family=int(rng.choice([1, 2, 2, 3, 4, 5, 6])))
        tex = "wood" if kind in ("cabinet", "shelf", "table") and rng.random() < 0.7 else (
            "fabric" if kind == "sofa" else "paint")
        if kind == "shelf":
            w, h, dd = rng.uniform(0.6, 1.4), rng.uniform(1.4, 2.2), rng.uniform(0.3, 0.45)
        elif kind == "cabinet":
            w, h, dd = rng.uniform(0.6, 1.6), rng.uniform(0.6, 1.1), rng.uniform(0.4, 0.6)
        elif kind == "sofa":
            w, h, dd = rng.uniform(1.4, 2.2), rng.uniform(0.7, 0.9), rng.uniform(0.8, 1.0)
        else:
            w, h, dd = rng.uniform(0.8, 1.6), rng.uniform(0.7, 0.8), rng.uniform(0.6, 1.0)
        # Against the back wall, the left wall or the right wall (tables may stand free).
        where = rng.integers(3) if kind != "table" else 3
        if where == 0:
            x0 = rng.uniform(0, max(0.01, width - w))
            z0 = depth - dd
            lo, hi = (x0, 0.0, z0), (x0 + w, h, depth)
        elif where in (1, 2):
            z0 = rng.uniform(depth * 0.45, max(depth * 0.45 + 0.01, depth - w))
            x0 = 0.0 if where == 1 else width - dd
            lo, hi = (x0, 0.0, z0), (x0 + dd, h, z0 + w)
        else:
            x0 = rng.uniform(0.2 * width, max(0.2 * width + 0.01, 0.8 * width - w))
            z0 = rng.uniform(depth * 0.55, depth * 0.8)
            lo, hi = (x0, 0.0, z0), (x0 + w, h, z0 + dd)
        if kind == "sofa":
            # seat block plus a backrest against the wall side
            boxes.append(Box(lo, (hi[0], h * 0.55, hi[2]), colour, tex))
            if where == 0:
                boxes.append(Box((lo[0], 0.0, hi[2] - 0.2), hi, jitter_colour(rng, colour), tex))
            elif where == 1:
                boxes.append(Box(lo, (lo[0] + 0.2, h, hi[2]), jitter_colour(rng, colour), tex))
            else:
                boxes.append(Box((hi[0] - 0.2, 0.0, lo[2]), hi, jitter_colour(rng, colour), tex))
        elif kind == "table":
            top = 0.05
            boxes.append(Box((lo[0], h - top, lo[2]), hi, colour, tex))
            for lx, lz in ((lo[0], lo[2]), (hi[0] - 0.06, lo[2]), (lo[0], hi[2] - 0.06),
                           (hi[0] - 0.06, hi[2] - 0.06)):
                boxes.append(Box((lx, 0.0, lz), (lx + 0.06, h - top, lz + 0.06), colour, tex))
        else:
            boxes.append(Box(lo, hi, colour, tex))
    return boxes
