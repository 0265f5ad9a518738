"""Procedural foreground cut-outs with alpha: people, boxes, blobs, plants, lamps, chairs and
freeform shapes (holes, thin legs and branches, busy photo-like texture).

A sprite is drawn once per foreground in metres (x across, y up from the floor contact at the
bottom centre) from signed distance fields, with rounded shading and fabric/wood texture, then
scaled per placement: where it stands on the floor sets its size in pixels and its depth.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from depthkit.synth.texture import Noise, jitter_colour, palette_colour, smoothstep

KINDS = ("person", "box", "blob", "plant", "lamp", "chair", "freeform")
# Freeform shapes carry the holes, thin parts and busy textures real cut-outs have (animals,
# bikes, branches); without them a model learns to fill holes and merge legs (tools/realcheck).
KIND_WEIGHTS = (0.28, 0.14, 0.1, 0.1, 0.06, 0.1, 0.22)


@dataclass(frozen=True)
class Sprite:
    """A cut-out: RGB and alpha (float32 in [0, 1]) plus its real size in metres."""

    kind: str
    rgb: np.ndarray  # (h, w, 3); colour is defined past the edge so resizing leaves no halo
    alpha: np.ndarray  # (h, w)
    height_m: float
    width_m: float


class _Canvas:
    """Metric pixel grid of a sprite: X across (centred), Y up from the floor."""

    def __init__(self, width_m: float, height_m: float, px_height: int) -> None:
        self.m_per_px = height_m / px_height
        self.w = max(4, int(round(width_m / self.m_per_px)))
        self.h = px_height
        xs = (np.arange(self.w, dtype=np.float32) + 0.5) * self.m_per_px - width_m / 2
        ys = height_m - (np.arange(self.h, dtype=np.float32) + 0.5) * self.m_per_px
        self.X, self.Y = np.meshgrid(xs, ys)


# Signed distance functions (metres; negative inside).
def sd_ellipse(c: _Canvas, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    return (np.hypot((c.X - cx) / rx, (c.Y - cy) / ry) - 1) * min(rx, ry)


def sd_capsule(c: _Canvas, ax: float, ay: float, bx: float, by: float, r: float) -> np.ndarray:
    px, py, vx, vy = c.X - ax, c.Y - ay, bx - ax, by - ay
    h = np.clip((px * vx + py * vy) / (vx * vx + vy * vy + 1e-12), 0, 1)
    return np.hypot(px - vx * h, py - vy * h) - r


def sd_poly(c: _Canvas, pts: list[tuple[float, float]]) -> np.ndarray:
    """Convex polygon (counter-clockwise points): max of edge half-plane distances."""
    d = np.full(c.X.shape, -np.inf, dtype=np.float32)
    for (x0, y0), (x1, y1) in zip(pts, pts[1:] + pts[:1], strict=True):
        ex, ey = x1 - x0, y1 - y0
        ln = np.hypot(ex, ey) + 1e-12
        d = np.maximum(d, ((c.X - x0) * ey - (c.Y - y0) * ex) / ln)
    return d


def sd_rect(c: _Canvas, x0: float, y0: float, x1: float, y1: float, r: float = 0.0) -> np.ndarray:
    cx, cy, hx, hy = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2 - r, (y1 - y0) / 2 - r
    qx, qy = np.abs(c.X - cx) - hx, np.abs(c.Y - cy) - hy
    return np.hypot(np.maximum(qx, 0), np.maximum(qy, 0)) + np.minimum(np.maximum(qx, qy), 0) - r


def _assemble(rng: np.random.Generator, c: _Canvas, parts: list[tuple[np.ndarray, np.ndarray]],
              roundness: float, kind: str, height_m: float, width_m: float) -> Sprite:
    """Combine (sdf, colour-image) parts: owner = nearest part; rounded shading; alpha from SDF."""
    sdfs = np.stack([p[0] for p in parts])
    owner = sdfs.argmin(0)
    sdf = np.take_along_axis(sdfs, owner[None], 0)[0]
    cols = np.stack([np.broadcast_to(p[1], c.X.shape + (3,)) for p in parts])
    rgb = np.take_along_axis(cols, owner[None, ..., None], 0)[0]
    # Rounded relief: a height field rising from each part's edge, lit from one side above.
    rho = roundness
    inner = np.clip(-sdf / rho, 0, 1)
    bulge = np.sqrt(1 - (1 - inner) ** 2)
    gy, gx = np.gradient(bulge * rho / c.m_per_px)
    lx, ly = rng.uniform(-0.7, 0.7), rng.uniform(0.4, 0.9)
    nz = 1.0
    norm = np.sqrt(gx * gx + gy * gy + nz * nz)
    lam = (-gx * lx + gy * ly + nz * 0.6) / norm / np.sqrt(lx * lx + ly * ly + 0.36)
    shade = 0.45 + 0.65 * np.clip(lam, 0, 1)
    rgb = np.clip(rgb * shade[..., None], 0, 1).astype(np.float32)
    alpha = np.clip(0.5 - sdf / c.m_per_px, 0, 1).astype(np.float32)
    return Sprite(kind=kind, rgb=rgb, alpha=alpha, height_m=height_m, width_m=width_m)


def _fabric(rng: np.random.Generator, noise: Noise, c: _Canvas, colour: np.ndarray) -> np.ndarray:
    """Plain, striped or checked cloth with a fine weave."""
    base = colour[None, None] * (0.93 + 0.07 * noise(c.X * 60, c.Y * 60))[..., None]
    style = rng.random()
    if style < 0.25:
        period = rng.uniform(0.03, 0.1)
        other = palette_colour(rng)
        stripe = (np.sin(c.Y * 2 * np.pi / period) > 0.3)[..., None]
        base = np.where(stripe, other[None, None] * 0.95, base)
    elif style < 0.4:
        period = rng.uniform(0.04, 0.1)
        chk = ((np.floor(c.X / period) + np.floor(c.Y / period)) % 2 == 0)[..., None]
        base = np.where(chk, base, base * 0.75)
    return base.astype(np.float32)


def _person(rng: np.random.Generator, px: int) -> Sprite:
    H = rng.uniform(1.45, 1.9)
    W = 0.55 * H
    c = _Canvas(W, H, px)
    noise = Noise(rng)
    skin = np.asarray(palette_colour(rng, family=2) * 0.4 + np.array([0.55, 0.42, 0.33]) * 0.6,
                      dtype=np.float32) * rng.uniform(0.6, 1.25)
    skin = np.clip(skin, 0, 1)
    shirt, pants = palette_colour(rng), palette_colour(rng, family=int(rng.choice([1, 3, 2])))
    hair = palette_colour(rng, family=2) * rng.uniform(0.2, 0.9)
    shoes = np.full(3, rng.uniform(0.05, 0.4), dtype=np.float32)
    sh_y, hip_y = 0.81 * H, 0.50 * H
    sh_w, hip_w = rng.uniform(0.10, 0.13) * H, rng.uniform(0.08, 0.11) * H
    head = sd_ellipse(c, 0, 0.92 * H, 0.06 * H, 0.072 * H)
    hair_sdf = np.maximum(sd_ellipse(c, 0, 0.935 * H, 0.064 * H, 0.07 * H), -(c.Y - 0.93 * H))
    neck = sd_capsule(c, 0, sh_y, 0, 0.88 * H, 0.025 * H)
    torso = sd_poly(c, [(-hip_w, hip_y), (hip_w, hip_y), (sh_w, sh_y), (-sh_w, sh_y)]) - 0.015 * H
    cloth = _fabric(rng, noise, c, shirt)
    parts = [(head, skin), (neck, skin), (hair_sdf, hair), (torso, cloth)]
    for side in (-1, 1):
        ang = rng.uniform(-0.25, 0.6)  # arm swing away from the body (radians)
        elbow = (side * (sh_w + 0.01 * H + np.sin(ang) * 0.17 * H), sh_y - np.cos(ang) * 0.17 * H)
        ang2 = ang + rng.uniform(-0.3, 0.5)
        hand = (elbow[0] + side * np.sin(ang2) * 0.16 * H, elbow[1] - np.cos(ang2) * 0.16 * H)
        upper = sd_capsule(c, side * (sh_w - 0.01 * H), sh_y - 0.01 * H, *elbow, 0.03 * H)
        lower = sd_capsule(c, *elbow, *hand, 0.024 * H)
        sleeve_long = rng.random() < 0.5
        parts.append((upper, cloth))
        parts.append((lower, cloth if sleeve_long else skin))
        parts.append((sd_ellipse(c, hand[0], hand[1] - 0.02 * H, 0.022 * H, 0.03 * H), skin))
        spread = rng.uniform(0.0, 0.08) * H
        foot = (side * (hip_w * 0.5 + spread), 0.03 * H)
        leg = sd_capsule(c, side * hip_w * 0.5, hip_y, foot[0], foot[1] + 0.02 * H, 0.042 * H)
        parts.append((leg, _fabric(rng, noise, c, pants)))
        parts.append((sd_ellipse(c, foot[0] + side * 0.02 * H, 0.02 * H, 0.05 * H, 0.022 * H),
                      shoes))
    if rng.random() < 0.3:  # a dress or long coat over the legs
        hem = rng.uniform(0.15, 0.35) * H
        flare = rng.uniform(0.12, 0.2) * H
        parts.append((sd_poly(c, [(-flare, hem), (flare, hem), (hip_w, hip_y + 0.05 * H),
                                  (-hip_w, hip_y + 0.05 * H)]), cloth))
    return _assemble(rng, c, parts, 0.06 * H, "person", H, W)


def _box(rng: np.random.Generator, px: int) -> Sprite:
    w, h = rng.uniform(0.3, 1.2), rng.uniform(0.3, 1.1)
    dx, dy = rng.choice([-1, 1]) * rng.uniform(0.08, 0.2) * w, rng.uniform(0.08, 0.2) * w
    W, H = w + abs(dx), h + dy
    c = _Canvas(W, H, px)
    noise = Noise(rng)
    x0 = -W / 2 + (abs(dx) if dx < 0 else 0)
    x1 = x0 + w
    colour = palette_colour(rng, family=int(rng.choice([2, 2, 0, 1, 3, 4, 5, 7])))
    style = rng.choice(["cardboard", "crate", "painted"])
    if style == "crate":
        tex = 0.8 + 0.15 * noise(c.X * 3, c.Y * 50) + 0.1 * (np.sin(c.Y * 2 * np.pi / 0.12) > 0.9)
    elif style == "cardboard":
        tex = 0.92 + 0.08 * noise.fbm(c.X * 20, c.Y * 20, 2)
        tex = tex * np.where(np.abs(c.X - (x0 + x1) / 2) < 0.03 * w, 0.8, 1.0)  # tape
    else:
        tex = 0.96 + 0.04 * noise(c.X * 5, c.Y * 5)
    face = colour[None, None] * tex[..., None].astype(np.float32)
    front = sd_poly(c, [(x0, 0), (x1, 0), (x1, h), (x0, h)])
    top = sd_poly(c, [(x0, h), (x1, h), (x1 + dx, h + dy), (x0 + dx, h + dy)] if dx > 0 else
                  [(x0, h), (x1, h), (x1 + dx, h + dy), (x0 + dx, h + dy)])
    if dx > 0:
        side = sd_poly(c, [(x1, 0), (x1 + dx, dy), (x1 + dx, h + dy), (x1, h)])
    else:
        side = sd_poly(c, [(x0 + dx, dy), (x0, 0), (x0, h), (x0 + dx, h + dy)])
    parts = [(front, face), (top, np.clip(face * 1.25, 0, 1)), (side, face * 0.7)]
    return _assemble(rng, c, parts, 0.01, "box", H, W)


def _blob(rng: np.random.Generator, px: int) -> Sprite:
    r0 = rng.uniform(0.2, 0.5)
    squash = rng.uniform(0.6, 1.3)
    W, H = 3.0 * r0, 2.5 * r0 * squash
    c = _Canvas(W, H, px)
    noise = Noise(rng)
    cy = r0 * squash
    ang = np.arctan2((c.Y - cy) / squash, c.X)
    rad = np.full(c.X.shape, r0, dtype=np.float32)
    for k in range(2, 6):
        rad += r0 * rng.uniform(0, 0.12) * np.cos(k * ang + rng.uniform(0, 2 * np.pi))
    sdf = np.hypot(c.X, (c.Y - cy) / squash) - rad
    sdf = np.maximum(sdf, -c.Y)  # sits flat on the floor
    colour = palette_colour(rng)
    if rng.random() < 0.5:
        pattern = 0.85 + 0.15 * (noise(c.X * 12, c.Y * 12) > 0.2)
    else:
        pattern = 0.9 + 0.1 * noise.fbm(c.X * 25, c.Y * 25, 3)
    col = colour[None, None] * pattern[..., None].astype(np.float32)
    return _assemble(rng, c, [(sdf, col)], 0.6 * r0, "blob", H, W)


def _plant(rng: np.random.Generator, px: int) -> Sprite:
    pot_h, pot_w = rng.uniform(0.2, 0.4), rng.uniform(0.2, 0.4)
    fol_r = rng.uniform(0.25, 0.55)
    H = pot_h + 1.6 * fol_r
    W = max(pot_w, 2.2 * fol_r)
    c = _Canvas(W, H, px)
    noise = Noise(rng)
    pot_col = palette_colour(rng, family=int(rng.choice([1, 2, 5, 3])))
    pot = sd_poly(c, [(-pot_w * 0.4, 0), (pot_w * 0.4, 0), (pot_w / 2, pot_h), (-pot_w / 2, pot_h)])
    leaves = np.full(c.X.shape, np.inf, dtype=np.float32)
    for _ in range(int(rng.integers(5, 12))):
        a = rng.uniform(0, np.pi)
        rr = rng.uniform(0.3, 0.8) * fol_r
        cx, cy = np.cos(a) * rr * 0.9, pot_h + fol_r * 0.45 + np.sin(a) * rr * 0.9
        leaves = np.minimum(leaves, sd_ellipse(c, cx, cy, rng.uniform(0.25, 0.45) * fol_r,
                                               rng.uniform(0.2, 0.35) * fol_r))
    green = palette_colour(rng, family=4) if rng.random() < 0.8 else palette_colour(rng)
    leaf_tex = 0.75 + 0.35 * (noise(c.X * 25, c.Y * 25) * 0.5 + 0.5)
    parts = [(pot, pot_col[None, None] * np.ones_like(c.X)[..., None]),
             (leaves, green[None, None] * leaf_tex[..., None])]
    return _assemble(rng, c, parts, 0.08, "plant", H, W)


def _lamp(rng: np.random.Generator, px: int) -> Sprite:
    H = rng.uniform(1.2, 1.75)
    shade_h, shade_w = rng.uniform(0.2, 0.35), rng.uniform(0.3, 0.5)
    W = max(shade_w, 0.35)
    c = _Canvas(W, H, px)
    metal = palette_colour(rng, family=1) * rng.uniform(0.3, 1.0)
    cloth = np.clip(palette_colour(rng, family=int(rng.choice([0, 7, 1]))) * 1.15, 0, 1)
    base = sd_ellipse(c, 0, 0.02, 0.15, 0.025)
    pole = sd_capsule(c, 0, 0.02, 0, H - shade_h * 0.5, 0.015)
    shade = sd_poly(c, [(-shade_w / 2, H - shade_h), (shade_w / 2, H - shade_h),
                        (shade_w * 0.3, H), (-shade_w * 0.3, H)])
    parts = [(base, metal), (pole, metal), (shade, cloth)]
    return _assemble(rng, c, parts, 0.03, "lamp", H, W)


def _chair(rng: np.random.Generator, px: int) -> Sprite:
    seat_h, H, w = rng.uniform(0.42, 0.5), rng.uniform(0.8, 1.05), rng.uniform(0.42, 0.6)
    W = w * 1.15
    c = _Canvas(W, H, px)
    noise = Noise(rng)
    wood = palette_colour(rng, family=int(rng.choice([2, 2, 1, 5, 3])))
    tex = (wood[None, None] * (0.85 + 0.15 * noise(c.X * 4, c.Y * 40))[..., None]).astype(
        np.float32)
    back_off = rng.uniform(0.03, 0.08) * rng.choice([-1, 1])
    t = 0.035
    parts = [
        (sd_rect(c, -w / 2, seat_h - 0.05, w / 2, seat_h, 0.01), tex),
        (sd_rect(c, -w / 2 + back_off, seat_h, -w / 2 + back_off + t, H, 0.01), tex),
        (sd_rect(c, w / 2 + back_off - t, seat_h, w / 2 + back_off, H, 0.01), tex),
        (sd_rect(c, -w / 2 + back_off, H - 0.15, w / 2 + back_off, H - 0.02, 0.02), tex),
        (sd_rect(c, -w / 2, 0, -w / 2 + t, seat_h, 0.005), tex * 0.85),
        (sd_rect(c, w / 2 - t, 0, w / 2, seat_h, 0.005), tex * 0.85),
        (sd_rect(c, -w / 2 + 0.08, 0.03, -w / 2 + 0.08 + t * 0.8, seat_h, 0.005), tex * 0.6),
        (sd_rect(c, w / 2 - 0.08 - t * 0.8, 0.03, w / 2 - 0.08, seat_h, 0.005), tex * 0.6),
    ]
    return _assemble(rng, c, parts, 0.015, "chair", H, W)


def _photo_texture(rng: np.random.Generator, noise: Noise, c: _Canvas) -> np.ndarray:
    """Busy multi-colour texture: patches of 2-3 colours at two scales, grain and a gradient."""
    cols = [palette_colour(rng) for _ in range(3)]
    f1, f2 = rng.uniform(2, 8), rng.uniform(10, 30)
    big = smoothstep(-0.25, 0.25, noise.fbm(c.X * f1, c.Y * f1, 3))[..., None]
    rgb = cols[0][None, None] * (1 - big) + cols[1][None, None] * big
    spots = (noise(c.X * f2 + 51.0, c.Y * f2 + 13.0) > rng.uniform(0.2, 0.6))[..., None]
    rgb = np.where(spots, cols[2][None, None], rgb)
    grain = 0.85 + 0.15 * noise.fbm(c.X * 80, c.Y * 80, 2)
    ramp = 1 + rng.uniform(-0.25, 0.25) * (c.Y / max(float(c.Y.max()), 1e-6) - 0.5)
    return np.clip(rgb * (grain * ramp)[..., None], 0, 1).astype(np.float32)


def _sdf_of_field(c: _Canvas, field: np.ndarray) -> np.ndarray:
    """Approximate signed distance (metres, negative inside) of the region field > 0."""
    gy, gx = np.gradient(field, c.m_per_px)
    return (-field / np.maximum(np.hypot(gx, gy), 1e-3)).astype(np.float32)


def _freeform(rng: np.random.Generator, px: int) -> Sprite:
    """A lumpy body with see-through holes, on thin legs or not, with thin branches."""
    H = rng.uniform(0.5, 1.6)
    W = H * rng.uniform(0.6, 1.5)
    c = _Canvas(W, H, px)
    noise = Noise(rng)
    legs_h = rng.uniform(0.15, 0.5) * H if rng.random() < 0.5 else 0.0
    brx, bry = 0.45 * W * rng.uniform(0.65, 1.0), 0.47 * (H - legs_h) * rng.uniform(0.65, 1.0)
    bcx = rng.uniform(-0.08, 0.08) * W
    # On legs: the body floats above them; without: it sinks into the floor (a flat base).
    bcy = legs_h + (H - legs_h) * 0.5 if legs_h > 0 else 0.6 * bry
    env = np.hypot((c.X - bcx) / brx, (c.Y - bcy) / bry)
    k = rng.uniform(1.5, 4.0) / min(brx, bry)
    field = 1 - env + rng.uniform(0.2, 0.6) * noise.fbm(c.X * k, c.Y * k, 3)
    sdf = np.maximum(_sdf_of_field(c, field), -c.Y)
    thin = max(c.m_per_px * 0.6, 0.012 * H)  # limbs 1-4 px wide at any drawing size
    for _ in range(int(rng.integers(0, 4))):  # holes through the body
        hx = bcx + rng.uniform(-0.5, 0.5) * brx
        hy = bcy + rng.uniform(-0.5, 0.5) * bry
        r = rng.uniform(0.06, 0.2) * min(brx, bry)
        sdf = np.maximum(sdf, -sd_ellipse(c, hx, hy, r * rng.uniform(0.6, 1.6), r))
    if legs_h > 0:
        n = int(rng.integers(2, 5))
        for x in np.linspace(-0.7, 0.7, n) * brx + bcx + rng.uniform(-0.05, 0.05, n) * W:
            top_y = bcy - 0.6 * bry
            foot = x + rng.uniform(-0.1, 0.1) * W
            r = thin * rng.uniform(1.0, 2.5)
            sdf = np.minimum(sdf, sd_capsule(c, x, top_y, foot, r, r))
    for _ in range(int(rng.integers(0, 4))):  # branches, antennae, tails
        a = rng.uniform(0, 2 * np.pi)
        x0, y0 = bcx + np.cos(a) * brx * 0.6, bcy + np.sin(a) * bry * 0.6
        length = rng.uniform(0.3, 0.8) * min(W, H) * 0.5
        x1 = float(np.clip(x0 + np.cos(a) * length, -W / 2 + thin, W / 2 - thin))
        y1 = float(np.clip(y0 + np.sin(a) * length, legs_h + thin, H - thin))
        sdf = np.minimum(sdf, sd_capsule(c, x0, y0, x1, y1, thin * rng.uniform(0.8, 2.0)))
    tex = _photo_texture(rng, noise, c)
    return _assemble(rng, c, [(sdf, tex)], 0.03 * H, "freeform", H, W)


_MAKERS: dict[str, Callable[[np.random.Generator, int], Sprite]] = {
    "person": _person, "box": _box, "blob": _blob, "plant": _plant, "lamp": _lamp,
    "chair": _chair, "freeform": _freeform,
}


def render_sprite(rng: np.random.Generator, px_height: int) -> Sprite:
    """One random foreground cut-out drawn px_height pixels tall."""
    kind = str(rng.choice(KINDS, p=KIND_WEIGHTS))
    sprite = _MAKERS[kind](rng, px_height)
    if rng.random() < 0.3:  # a second material instance: slightly different tint
        sprite = Sprite(sprite.kind, np.clip(sprite.rgb * jitter_colour(rng, np.ones(3), 0.1),
                                             0, 1).astype(np.float32),
                        sprite.alpha, sprite.height_m, sprite.width_m)
    return sprite
