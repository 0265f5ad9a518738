"""Procedural indoor backgrounds with exact depth: a ray-cast room (floor, walls, ceiling, boxes).

The camera is level (optical axis horizontal, verticals stay vertical); the horizon row `cy`
is moved by shifting the principal point, as a shift lens does. A level camera keeps two facts
exact and simple: a floor point seen at row v has depth z = f * height / (v - cy), and an
upright object standing on the floor at depth z has depth z everywhere (camera-space z).
Depth is camera-space z in metres; textures live in world coordinates, so they recede in
perspective. All rendering is vectorised numpy over pixels (no per-pixel Python loops).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from depthkit.synth.texture import Noise, cell_hash, jitter_colour, palette_colour, smoothstep

FLOOR, CEILING, WALL_LEFT, WALL_RIGHT, WALL_BACK, FIRST_BOX = 0, 1, 2, 3, 4, 5
SUPERSAMPLE = 2  # rays per pixel side; averaged down for anti-aliasing


@dataclass(frozen=True)
class Camera:
    """A level pinhole camera `height` metres above the floor, image res x res pixels."""

    res: int
    f: float  # focal length in pixels
    cx: float
    cy: float  # horizon row (principal point)
    height: float

    def floor_depth(self, v: float | np.ndarray) -> float | np.ndarray:
        """Depth (camera z, metres) of the floor seen at image row v (continuous, v > cy)."""
        return self.f * self.height / (v - self.cy)

    def floor_row(self, z: float) -> float:
        """Inverse of floor_depth: the image row where the floor is at depth z."""
        return self.cy + self.f * self.height / z


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in room coordinates (metres; y up, floor at y = 0)."""

    lo: tuple[float, float, float]
    hi: tuple[float, float, float]
    colour: np.ndarray
    texture: str  # "wood" | "fabric" | "paint"


@dataclass(frozen=True)
class Scene:
    """A rendered background: image, depth, surface ids and lighting, all res x res."""

    camera: Camera
    image: np.ndarray  # uint8 (res, res, 3)
    depth: np.ndarray  # float32 (res, res), camera z in metres
    floor: np.ndarray  # bool (res, res): the pixel shows open floor (objects may stand there)
    shade: np.ndarray  # float32 (res, res): light falling on the surface (albedo removed)
    light_colour: np.ndarray  # float32 (3,)


def _pixel_rays(cam: Camera, ss: int) -> tuple[np.ndarray, np.ndarray]:
    """Camera-space ray directions (a, b) with z = 1, ss x ss rays per pixel."""
    n = cam.res * ss
    c = (np.arange(n, dtype=np.float32) + 0.5) / ss
    a = (c[None, :] - cam.cx) / cam.f
    b = -(c[:, None] - cam.cy) / cam.f
    return np.broadcast_to(a, (n, n)), np.broadcast_to(b, (n, n))


def _ray_boxes(
    o: np.ndarray, d: tuple[np.ndarray, ...], boxes: list[Box], t_best: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest box hit per ray closer than t_best: (t, box index or -1, hit axis)."""
    t_best = t_best.copy()
    hit = np.full(t_best.shape, -1, dtype=np.int16)
    axis = np.zeros(t_best.shape, dtype=np.int8)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = [np.where(np.abs(di) > 1e-9, 1.0 / di, 1e9).astype(np.float32) for di in d]
        for k, box in enumerate(boxes):
            tmins, tmaxs = [], []
            for ax in range(3):
                t1 = (box.lo[ax] - o[ax]) * inv[ax]
                t2 = (box.hi[ax] - o[ax]) * inv[ax]
                tmins.append(np.minimum(t1, t2))
                tmaxs.append(np.maximum(t1, t2))
            tnear = np.maximum(np.maximum(tmins[0], tmins[1]), tmins[2])
            tfar = np.minimum(np.minimum(tmaxs[0], tmaxs[1]), tmaxs[2])
            ok = (tnear <= tfar) & (tnear > 1e-4) & (tnear < t_best)
            if not ok.any():
                continue
            t_best[ok] = tnear[ok]
            hit[ok] = k
            near = tnear[ok]
            axis[ok] = np.where(near == tmins[0][ok], 0, np.where(near == tmins[1][ok], 1, 2))
    return t_best, hit, axis


def _shadowed(p: np.ndarray, light: np.ndarray, boxes: list[Box]) -> np.ndarray:
    """1 where the segment from surface point p to the light crosses a box, else 0."""
    d = [light[i] - p[i] for i in range(3)]
    out = np.zeros(p[0].shape, dtype=np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = [np.where(np.abs(di) > 1e-9, 1.0 / di, 1e9) for di in d]
        for box in boxes:
            tnear = np.full(p[0].shape, -np.inf, dtype=np.float32)
            tfar = np.full(p[0].shape, np.inf, dtype=np.float32)
            for ax in range(3):
                t1 = (box.lo[ax] - p[ax]) * inv[ax]
                t2 = (box.hi[ax] - p[ax]) * inv[ax]
                tnear = np.maximum(tnear, np.minimum(t1, t2))
                tfar = np.minimum(tfar, np.maximum(t1, t2))
            hit = (tnear <= tfar) & (tnear > 1e-3) & (tnear < 1)
            out = np.maximum(out, hit.astype(np.float32))
    return out


def _furniture(rng: np.random.Generator, width: float, depth: float) -> list[Box]:
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


def _floor_albedo(rng: np.random.Generator, noise: Noise, x: np.ndarray, z: np.ndarray,
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


def _wall_albedo(rng: np.random.Generator, noise: Noise, s: np.ndarray, y: np.ndarray,
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


def render_room(rng: np.random.Generator, res: int) -> Scene:
    """Render one random room seen from a level camera; exact camera-z depth per pixel."""
    ss = SUPERSAMPLE
    fov = math.radians(rng.uniform(55, 75))
    f = res / (2 * math.tan(fov / 2))
    height = rng.uniform(1.1, 1.7)
    cam = Camera(res=res, f=f, cx=res * rng.uniform(0.45, 0.55), cy=res * rng.uniform(0.22, 0.45),
                 height=height)
    width, depth, ceiling = rng.uniform(4, 8), rng.uniform(6, 12), rng.uniform(2.4, 3.2)
    yaw = math.radians(rng.uniform(-22, 22))
    ox, oz = width * rng.uniform(0.3, 0.7), rng.uniform(0.2, 1.0)
    o = np.array([ox, height, oz], dtype=np.float32)

    a, b = _pixel_rays(cam, ss)
    cs, sn = math.cos(yaw), math.sin(yaw)
    dx = (a * cs + sn).astype(np.float32)
    dy = b.astype(np.float32)
    dz = (-a * sn + cs).astype(np.float32)

    big = np.float32(1e6)
    with np.errstate(divide="ignore", invalid="ignore"):
        cands = np.stack([
            np.where(dy < 0, -height / dy, big),
            np.where(dy > 0, (ceiling - height) / dy, big),
            np.where(dx < 0, -ox / dx, big),
            np.where(dx > 0, (width - ox) / dx, big),
            np.where(dz > 0, (depth - oz) / dz, big),
        ]).astype(np.float32)
    surf = cands.argmin(0).astype(np.int16)
    t = cands.min(0)
    boxes = _furniture(rng, width, depth)
    t, box_hit, box_axis = _ray_boxes(o, (dx, dy, dz), boxes, t)
    surf = np.where(box_hit >= 0, FIRST_BOX + box_hit, surf)

    px, py, pz = o[0] + t * dx, o[1] + t * dy, o[2] + t * dz
    noise = Noise(rng)
    n = res * ss
    albedo = np.zeros((n, n, 3), dtype=np.float32)
    emission = np.zeros((n, n, 3), dtype=np.float32)
    normal = np.zeros((3, n, n), dtype=np.float32)

    sel = surf == FLOOR
    albedo[sel] = _floor_albedo(rng, noise, px[sel], pz[sel], width, depth)
    normal[1][sel] = 1
    ceil_col = np.float32(rng.uniform(0.85, 0.97))
    albedo[surf == CEILING] = ceil_col
    normal[1][surf == CEILING] = -1
    wall_base = palette_colour(rng, family=int(rng.choice([0, 0, 1, 3, 4, 7])))
    accent = palette_colour(rng) if rng.random() < 0.3 else wall_base
    for sid, s_coord, length, nrm, colour in (
        (WALL_LEFT, pz, depth, (1, 0, 0), wall_base),
        (WALL_RIGHT, depth - pz, depth, (-1, 0, 0), wall_base),
        (WALL_BACK, px, width, (0, 0, -1), accent),
    ):
        sel = surf == sid
        if not sel.any():
            continue
        albedo[sel], emission[sel] = _wall_albedo(rng, noise, s_coord[sel], py[sel], length,
                                                  ceiling, colour)
        for k in range(3):
            normal[k][sel] = nrm[k]
    for k, box in enumerate(boxes):
        sel = surf == FIRST_BOX + k
        if not sel.any():
            continue
        ax = box_axis[sel]
        u = np.where(ax == 0, pz[sel], px[sel])
        v = np.where(ax == 1, pz[sel], py[sel])
        if box.texture == "wood":
            tex = 0.85 + 0.1 * noise(u * 3, v * 40) + 0.05 * noise(u * 20, v * 2)
        elif box.texture == "fabric":
            tex = 0.9 + 0.1 * noise.fbm(u * 40, v * 40, 2)
        else:
            tex = 0.95 + 0.05 * noise(u * 4, v * 4)
        albedo[sel] = box.colour[None] * tex[:, None]

    isbox = box_hit >= 0
    for axis, d_axis in enumerate((dx, dy, dz)):
        on = isbox & (box_axis == axis)
        normal[axis][on] = -np.sign(d_axis[on])

    # Lighting: ambient with corner occlusion + a ceiling lamp with hard box shadows.
    light_colour = np.asarray([1.0, rng.uniform(0.85, 1.0), rng.uniform(0.65, 0.95)],
                              dtype=np.float32)
    if rng.random() < 0.4:
        light_colour = light_colour[::-1].copy()  # cool daylight instead of warm lamp
    lamp = np.array([rng.uniform(0.2, 0.8) * width, ceiling - 0.25,
                     rng.uniform(0.3, 0.8) * depth], dtype=np.float32)
    lx, ly, lz = lamp[0] - px, lamp[1] - py, lamp[2] - pz
    dist = np.sqrt(lx * lx + ly * ly + lz * lz) + 1e-6
    lambert = np.clip((normal[0] * lx + normal[1] * ly + normal[2] * lz) / dist, 0, 1)
    power = rng.uniform(4, 10)
    direct = power * lambert / (1 + dist * dist)
    direct *= 1 - 0.8 * _shadowed((px, py, pz), lamp, boxes)
    wall_dist = np.minimum.reduce([px, width - px, depth - pz, py, ceiling - py])
    occl = 1 - 0.35 * np.exp(-np.maximum(wall_dist, 0) / 0.25)
    for box in boxes:  # darken the floor around each box's footprint (contact shadow)
        ddx = np.maximum(np.maximum(box.lo[0] - px, px - box.hi[0]), 0)
        ddz = np.maximum(np.maximum(box.lo[2] - pz, pz - box.hi[2]), 0)
        near = (surf == FLOOR) * np.exp(-np.sqrt(ddx * ddx + ddz * ddz) / 0.2)
        occl *= 1 - 0.4 * near
    ambient = rng.uniform(0.35, 0.6)
    shade = (ambient * occl + direct).astype(np.float32)
    exposure = rng.uniform(0.85, 1.15)
    rgb = (albedo * shade[..., None] * light_colour[None, None] + emission) * exposure

    # Down-sample (anti-aliasing), then lens vignette and sensor noise.
    rgb = rgb.reshape(res, ss, res, ss, 3).mean((1, 3))
    shade_lo = (shade * exposure).reshape(res, ss, res, ss).mean((1, 3))
    depth_map = t.reshape(res, ss, res, ss).mean((1, 3)).astype(np.float32)
    floor = (surf == FLOOR).reshape(res, ss, res, ss).all((1, 3))
    yy, xx = np.mgrid[0:res, 0:res].astype(np.float32) / res - 0.5
    rgb *= (1 - rng.uniform(0.1, 0.35) * (xx * xx + yy * yy) * 2)[..., None]
    rgb += rng.normal(0, rng.uniform(0.004, 0.015), rgb.shape).astype(np.float32)
    image = (np.clip(rgb, 0, 1) ** rng.uniform(0.85, 1.0) * 255 + 0.5).astype(np.uint8)
    return Scene(camera=cam, image=image, depth=depth_map, floor=floor,
                 shade=shade_lo.astype(np.float32), light_colour=light_colour)
