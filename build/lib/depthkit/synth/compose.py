"""Pasting a cut-out into a room: where it stands, the composite, its exact mask and depth.

The object stands on visible floor in front of everything it covers; its depth is the floor's
at its feet. The mask is the pixels where the pasted alpha is >= 0.5 (more object than
background); see `depthkit.synth.dataset` for why.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from depthkit.synth.scene import Scene
from depthkit.synth.sprites import Sprite

HARD_PASTE = 0.5  # share of pastes with a hard 0/1 alpha
CAMOUFLAGE = 0.15  # share of cut-outs textured with a patch of their own room


@dataclass(frozen=True)
class Placement:
    """Where a foreground stands: foot at (u, v) pixels, depth z metres, pasted box."""

    u: float
    v: float
    z: float
    top: int
    left: int
    height: int
    width: int


@dataclass(frozen=True)
class Composite:
    """One rendered sample before encoding."""

    fgbg: np.ndarray  # uint8 (res, res, 3)
    mask: np.ndarray  # bool (res, res): pasted alpha >= 0.5
    depth: np.ndarray  # float32 (res, res): camera z in metres, object included
    placement: Placement
    hard: bool = False  # pasted with a hard 0/1 alpha (else the cut-out's soft alpha)
    camouflage: bool = False  # textured with a patch of its own room


def _resize(img: Image.Image, w: int, h: int) -> np.ndarray:
    return np.asarray(img.resize((w, h), Image.Resampling.BILINEAR))


def place(scene: Scene, sprite_img: Image.Image, sprite: Sprite, rng: np.random.Generator,
          tries: int = 30) -> tuple[Placement, np.ndarray]:
    """Pick a floor spot where the object stands in front of everything it covers.

    Returns the placement and the resized RGBA sprite. If no spot passes in `tries`, the
    object stands at the bottom row (nearest floor), in front of the scene by construction
    of the depth map (it may then overlap furniture it should be behind: rare, accepted).
    """
    cam, res = scene.camera, scene.camera.res
    z_far = cam.f * sprite.height_m / (0.12 * res)  # farther would make it under 12% of res
    v_max = res - 0.5
    v_min = min(max(cam.floor_row(z_far), cam.cy + 1.0), v_max - 1.0)
    for attempt in range(tries + 1):
        last = attempt == tries
        v = v_max if last else rng.uniform(v_min, v_max)
        u = rng.uniform(0.05 * res, 0.95 * res)
        if not last and not scene.floor[int(v), int(u)]:
            continue
        z = float(cam.floor_depth(v))
        h = max(2, int(round(sprite.height_m * cam.f / z)))
        w = max(1, int(round(sprite.width_m * cam.f / z)))
        top, left = int(v) - h + 1, int(round(u - w / 2))
        rgba = _resize(sprite_img, w, h)
        if not last:
            y0, x0 = max(top, 0), max(left, 0)
            y1, x1 = min(top + int(h * 0.9), res), min(left + w, res)  # feet rows excluded
            if y1 > y0 and x1 > x0:
                covered = rgba[y0 - top:y1 - top, x0 - left:x1 - left, 3] > 0
                if (scene.depth[y0:y1, x0:x1][covered] < z * 0.98).any():
                    continue  # something nearer (furniture) would hide it
        return Placement(u, v, z, top, left, h, w), rgba
    raise AssertionError("unreachable")


def compose(scene: Scene, sprite_img: Image.Image, sprite: Sprite,
            rng: np.random.Generator) -> Composite:
    """Paste one cut-out into the scene: composite, exact mask, depth with the object."""
    res = scene.camera.res
    p, rgba = place(scene, sprite_img, sprite, rng)
    y0, x0 = max(p.top, 0), max(p.left, 0)
    y1, x1 = min(p.top + p.height, res), min(p.left + p.width, res)
    patch = rgba[y0 - p.top:y1 - p.top, x0 - p.left:x1 - p.left]
    a8 = patch[..., 3]
    inside = a8 >= 128
    hard = rng.random() < HARD_PASTE
    camouflage = rng.random() < CAMOUFLAGE

    fgbg = scene.image.copy()
    # Soft contact shadow on the floor around the feet (outside the mask it changes fgbg only).
    rx, ry = 0.6 * p.width + 1, max(1.5, 0.12 * p.width)
    sy0, sy1 = max(int(p.v - 2 * ry), 0), min(int(p.v + 2 * ry) + 1, res)
    sx0, sx1 = max(int(p.u - 2 * rx), 0), min(int(p.u + 2 * rx) + 1, res)
    if sy1 > sy0 and sx1 > sx0:
        yy, xx = np.mgrid[sy0:sy1, sx0:sx1].astype(np.float32) + 0.5
        fall = np.exp(-(((xx - p.u) / rx) ** 2 + ((yy - p.v) / ry) ** 2) * 2)
        dark = (1 - rng.uniform(0.2, 0.5) * fall)[..., None]
        fgbg[sy0:sy1, sx0:sx1] = (fgbg[sy0:sy1, sx0:sx1] * dark + 0.5).astype(np.uint8)

    if inside.any():
        # Light the object like the room where it stands; sometimes take the room's colours.
        shade = float(np.clip(scene.shade[y0:y1, x0:x1][inside].mean(), 0.35, 1.6))
        fg = patch[..., :3].astype(np.float32) * (shade * scene.light_colour)
        if camouflage:
            fg = room_patch(scene.image, fg.shape[:2], rng).astype(np.float32)
        elif rng.random() < 0.3:
            local = scene.image[y0:y1, x0:x1].reshape(-1, 3).mean(0).astype(np.float32)
            lum = fg.mean(-1, keepdims=True)
            tinted = lum / max(float(lum[inside].mean()), 1.0) * local
            t = rng.uniform(0.5, 0.9)
            fg = fg * (1 - t) + tinted * t
        a = (inside if hard else a8.astype(np.float32) / 255.0)[..., None]
        mixed = fgbg[y0:y1, x0:x1] * (1 - a) + fg * a
        fgbg[y0:y1, x0:x1] = np.clip(mixed + 0.5, 0, 255).astype(np.uint8)

    mask = np.zeros((res, res), dtype=bool)
    mask[y0:y1, x0:x1] = inside
    depth = scene.depth.copy()
    depth[mask] = p.z
    return Composite(fgbg=fgbg, mask=mask, depth=depth, placement=p, hard=hard,
                     camouflage=camouflage and bool(inside.any()))


def room_patch(image: np.ndarray, shape: tuple[int, ...], rng: np.random.Generator
               ) -> np.ndarray:
    """A random (h, w) window of the room image, flipped at random (camouflage texture)."""
    h, w = shape
    big = image
    if h > image.shape[0] or w > image.shape[1]:
        big = np.asarray(Image.fromarray(image).resize(
            (max(w, image.shape[1]), max(h, image.shape[0])), Image.Resampling.BILINEAR))
    y = int(rng.integers(0, big.shape[0] - h + 1))
    x = int(rng.integers(0, big.shape[1] - w + 1))
    out = big[y:y + h, x:x + w]
    return out[:, ::-1] if rng.random() < 0.5 else out
