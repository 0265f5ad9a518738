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

from depthkit.synth.furniture import Box, furnish
from depthkit.synth.surfaces import floor_albedo, wall_albedo
from depthkit.synth.texture import Noise, palette_colour

FLOOR, CEILING, WALL_LEFT, WALL_RIGHT, WALL_BACK, FIRST_BOX = 0, 1, 2, 3, 4, 5
# Scene.surface values: the shell's ids, and FIRST_BOX for any piece of furniture.
SURFACE_NAMES = ("floor", "ceiling", "wall_left", "wall_right", "wall_back", "furniture")
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
class Room:
    """The room (metres; x across, y up, z away) and the camera in it at (ox, height, oz)."""

    cam: Camera
    width: float
    depth: float
    ceiling: float
    yaw: float  # camera turn about the vertical axis, radians
    ox: float
    oz: float

    @property
    def origin(self) -> np.ndarray:
        """The camera position in room coordinates (float32)."""
        return np.array([self.ox, self.cam.height, self.oz], dtype=np.float32)


@dataclass(frozen=True)
class Scene:
    """A rendered background: image, depth, surface ids and lighting, all res x res."""

    camera: Camera
    image: np.ndarray  # uint8 (res, res, 3)
    depth: np.ndarray  # float32 (res, res), camera z in metres
    floor: np.ndarray  # bool (res, res): the pixel shows open floor (objects may stand there)
    surface: np.ndarray  # int8 (res, res): what most of the pixel shows (SURFACE_NAMES index)
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



@dataclass(frozen=True)
class _Hits:
    """What each (supersampled) camera ray hit: direction, distance, surface, point."""

    d: tuple[np.ndarray, np.ndarray, np.ndarray]  # ray direction in room coordinates
    t: np.ndarray  # distance along d; with |d_z| = 1 before the turn, t is camera-z depth
    surf: np.ndarray  # surface id: FLOOR ... WALL_BACK, or FIRST_BOX + box index
    box_hit: np.ndarray  # box index or -1
    box_axis: np.ndarray  # axis of the box face hit (0, 1, 2)
    p: tuple[np.ndarray, np.ndarray, np.ndarray]  # hit point (x, y, z)


@dataclass(frozen=True)
class _Surfaces:
    """Per ray: albedo and emission (RGB) and the surface normal, filled surface by surface."""

    albedo: np.ndarray  # (n, n, 3)
    emission: np.ndarray  # (n, n, 3)
    normal: np.ndarray  # (3, n, n)

    @classmethod
    def empty(cls, n: int) -> _Surfaces:
        return cls(np.zeros((n, n, 3), dtype=np.float32), np.zeros((n, n, 3), dtype=np.float32),
                   np.zeros((3, n, n), dtype=np.float32))


def _random_room(rng: np.random.Generator, res: int) -> Room:
    """Draw the camera (field of view, height, horizon) and the room around it."""
    fov = math.radians(rng.uniform(55, 75))
    f = res / (2 * math.tan(fov / 2))
    height = rng.uniform(1.1, 1.7)
    cam = Camera(res=res, f=f, cx=res * rng.uniform(0.45, 0.55), cy=res * rng.uniform(0.22, 0.45),
                 height=height)
    width, depth, ceiling = rng.uniform(4, 8), rng.uniform(6, 12), rng.uniform(2.4, 3.2)
    yaw = math.radians(rng.uniform(-22, 22))
    ox, oz = width * rng.uniform(0.3, 0.7), rng.uniform(0.2, 1.0)
    return Room(cam, width, depth, ceiling, yaw, ox, oz)


def _view_rays(room: Room, ss: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ray directions in room coordinates: the pixel rays turned by the camera's yaw."""
    a, b = _pixel_rays(room.cam, ss)
    cs, sn = math.cos(room.yaw), math.sin(room.yaw)
    dx = (a * cs + sn).astype(np.float32)
    dy = b.astype(np.float32)
    dz = (-a * sn + cs).astype(np.float32)
    return dx, dy, dz


def _hit_shell(room: Room, d: tuple[np.ndarray, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Nearest of floor, ceiling and the three walls per ray: (surface id, distance)."""
    dx, dy, dz = d
    height = room.cam.height
    big = np.float32(1e6)
    with np.errstate(divide="ignore", invalid="ignore"):
        cands = np.stack([
            np.where(dy < 0, -height / dy, big),
            np.where(dy > 0, (room.ceiling - height) / dy, big),
            np.where(dx < 0, -room.ox / dx, big),
            np.where(dx > 0, (room.width - room.ox) / dx, big),
            np.where(dz > 0, (room.depth - room.oz) / dz, big),
        ]).astype(np.float32)
    return cands.argmin(0).astype(np.int16), cands.min(0)


def _trace(room: Room, boxes: list[Box], ss: int) -> _Hits:
    """Cast every ray against the room shell, then against the boxes standing in it."""
    o = room.origin
    d = _view_rays(room, ss)
    surf, t = _hit_shell(room, d)
    t, box_hit, box_axis = _ray_boxes(o, d, boxes, t)
    surf = np.where(box_hit >= 0, FIRST_BOX + box_hit, surf)
    p = (o[0] + t * d[0], o[1] + t * d[1], o[2] + t * d[2])
    return _Hits(d=d, t=t, surf=surf, box_hit=box_hit, box_axis=box_axis, p=p)


def _paint_shell(rng: np.random.Generator, noise: Noise, room: Room, hits: _Hits,
                 out: _Surfaces) -> None:
    """Floor and ceiling albedo and normals, then the walls."""
    px, _py, pz = hits.p
    sel = hits.surf == FLOOR
    out.albedo[sel] = floor_albedo(rng, noise, px[sel], pz[sel], room.width, room.depth)
    out.normal[1][sel] = 1
    ceil_col = np.float32(rng.uniform(0.85, 0.97))
    out.albedo[hits.surf == CEILING] = ceil_col
    out.normal[1][hits.surf == CEILING] = -1
    _paint_walls(rng, noise, room, hits, out)


def _paint_walls(rng: np.random.Generator, noise: Noise, room: Room, hits: _Hits,
                 out: _Surfaces) -> None:
    """Albedo, window emission and normals of the left, right and back walls."""
    px, py, pz = hits.p
    wall_base = palette_colour(rng, family=int(rng.choice([0, 0, 1, 3, 4, 7])))
    accent = palette_colour(rng) if rng.random() < 0.3 else wall_base
    for sid, s_coord, length, nrm, colour in (
        (WALL_LEFT, pz, room.depth, (1, 0, 0), wall_base),
        (WALL_RIGHT, room.depth - pz, room.depth, (-1, 0, 0), wall_base),
        (WALL_BACK, px, room.width, (0, 0, -1), accent),
    ):
        sel = hits.surf == sid
        if not sel.any():
            continue
        out.albedo[sel], out.emission[sel] = wall_albedo(rng, noise, s_coord[sel], py[sel],
                                                         length, room.ceiling, colour)
        for k in range(3):
            out.normal[k][sel] = nrm[k]


def _box_texture(noise: Noise, texture: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Brightness variation of a box face at face coordinates (u, v) metres."""
    if texture == "wood":
        return 0.85 + 0.1 * noise(u * 3, v * 40) + 0.05 * noise(u * 20, v * 2)
    if texture == "fabric":
        return 0.9 + 0.1 * noise.fbm(u * 40, v * 40, 2)
    return 0.95 + 0.05 * noise(u * 4, v * 4)


def _paint_boxes(noise: Noise, boxes: list[Box], hits: _Hits, out: _Surfaces) -> None:
    """Albedo of every box face, and the face normals (against the ray along the hit axis)."""
    px, py, pz = hits.p
    for k, box in enumerate(boxes):
        sel = hits.surf == FIRST_BOX + k
        if not sel.any():
            continue
        ax = hits.box_axis[sel]
        u = np.where(ax == 0, pz[sel], px[sel])
        v = np.where(ax == 1, pz[sel], py[sel])
        out.albedo[sel] = box.colour[None] * _box_texture(noise, box.texture, u, v)[:, None]

    isbox = hits.box_hit >= 0
    for axis, d_axis in enumerate(hits.d):
        on = isbox & (hits.box_axis == axis)
        out.normal[axis][on] = -np.sign(d_axis[on])


def _lamp_light(rng: np.random.Generator, room: Room, boxes: list[Box], hits: _Hits,
                normal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(light colour, direct light) of a ceiling lamp, Lambertian, with hard box shadows."""
    light_colour = np.asarray([1.0, rng.uniform(0.85, 1.0), rng.uniform(0.65, 0.95)],
                              dtype=np.float32)
    if rng.random() < 0.4:
        light_colour = light_colour[::-1].copy()  # cool daylight instead of warm lamp
    lamp = np.array([rng.uniform(0.2, 0.8) * room.width, room.ceiling - 0.25,
                     rng.uniform(0.3, 0.8) * room.depth], dtype=np.float32)
    px, py, pz = hits.p
    lx, ly, lz = lamp[0] - px, lamp[1] - py, lamp[2] - pz
    dist = np.sqrt(lx * lx + ly * ly + lz * lz) + 1e-6
    lambert = np.clip((normal[0] * lx + normal[1] * ly + normal[2] * lz) / dist, 0, 1)
    power = rng.uniform(4, 10)
    direct = power * lambert / (1 + dist * dist)
    direct *= 1 - 0.8 * _shadowed(hits.p, lamp, boxes)
    return light_colour, direct


def _occlusion(room: Room, boxes: list[Box], hits: _Hits) -> np.ndarray:
    """Ambient occlusion: darker near the room's corners and on the floor around each box."""
    px, py, pz = hits.p
    wall_dist = np.minimum.reduce([px, room.width - px, room.depth - pz, py, room.ceiling - py])
    occl = 1 - 0.35 * np.exp(-np.maximum(wall_dist, 0) / 0.25)
    for box in boxes:  # contact shadow around the box's footprint
        ddx = np.maximum(np.maximum(box.lo[0] - px, px - box.hi[0]), 0)
        ddz = np.maximum(np.maximum(box.lo[2] - pz, pz - box.hi[2]), 0)
        near = (hits.surf == FLOOR) * np.exp(-np.sqrt(ddx * ddx + ddz * ddz) / 0.2)
        occl *= 1 - 0.4 * near
    return occl


def _pixel_blocks(x: np.ndarray, ss: int) -> np.ndarray:
    """(n, n, ...) rays -> (res, ss, res, ss, ...): reduce axes (1, 3) to get pixels."""
    res = x.shape[0] // ss
    return x.reshape(res, ss, res, ss, *x.shape[2:])


def _majority_surface(surf: np.ndarray, ss: int) -> np.ndarray:
    """Per pixel, the Scene.surface class most of its ss x ss rays hit (ties: the lower id)."""
    cls = np.minimum(surf, FIRST_BOX)
    counts = np.stack([_pixel_blocks(cls == k, ss).sum((1, 3)) for k in range(FIRST_BOX + 1)])
    return counts.argmax(0).astype(np.int8)


def _develop(rng: np.random.Generator, rgb: np.ndarray) -> np.ndarray:
    """Lens vignette, sensor noise and a gamma on linear RGB (res, res, 3) -> uint8 image."""
    res = rgb.shape[0]
    yy, xx = np.mgrid[0:res, 0:res].astype(np.float32) / res - 0.5
    rgb *= (1 - rng.uniform(0.1, 0.35) * (xx * xx + yy * yy) * 2)[..., None]
    rgb += rng.normal(0, rng.uniform(0.004, 0.015), rgb.shape).astype(np.float32)
    return (np.clip(rgb, 0, 1) ** rng.uniform(0.85, 1.0) * 255 + 0.5).astype(np.uint8)


def render_room(rng: np.random.Generator, res: int) -> Scene:
    """Render one random room seen from a level camera; exact camera-z depth per pixel."""
    ss = SUPERSAMPLE
    room = _random_room(rng, res)
    boxes = furnish(rng, room.width, room.depth)
    hits = _trace(room, boxes, ss)
    noise = Noise(rng)
    surfaces = _Surfaces.empty(res * ss)
    _paint_shell(rng, noise, room, hits, surfaces)
    _paint_boxes(noise, boxes, hits, surfaces)

    # Lighting: ambient with corner occlusion + a ceiling lamp with hard box shadows.
    light_colour, direct = _lamp_light(rng, room, boxes, hits, surfaces.normal)
    occl = _occlusion(room, boxes, hits)
    ambient = rng.uniform(0.35, 0.6)
    shade = (ambient * occl + direct).astype(np.float32)
    exposure = rng.uniform(0.85, 1.15)
    rgb = (surfaces.albedo * shade[..., None] * light_colour[None, None] + surfaces.emission)
    rgb = rgb * exposure

    # Down-sample (anti-aliasing), then develop the image.
    image = _develop(rng, _pixel_blocks(rgb, ss).mean((1, 3)))
    shade_lo = _pixel_blocks(shade * exposure, ss).mean((1, 3))
    depth_map = _pixel_blocks(hits.t, ss).mean((1, 3)).astype(np.float32)
    floor = _pixel_blocks(hits.surf == FLOOR, ss).all((1, 3))
    return Scene(camera=room.cam, image=image, depth=depth_map, floor=floor,
                 surface=_majority_surface(hits.surf, ss), shade=shade_lo.astype(np.float32),
                 light_colour=light_colour)
