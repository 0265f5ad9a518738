"""Seeded synthetic datasets in the original "school" layout, with exact masks and depth.

Each background is a ray-cast room (`depthkit.synth.scene`), each foreground a procedural cut-out
(`depthkit.synth.sprites`). A sample pastes foreground `fg` (flipped or not) standing on the visible
floor of background `bg` at a random spot: the floor row of its feet sets its depth
z = f * camera_height / (row - horizon) and its size in pixels (f * metres / z).

- fgbg: the composite, RGB JPEG (quality 95), with a soft contact shadow under the object;
  half the pastes use the cut-out's soft (anti-aliased) alpha, half a hard 0/1 alpha (how
  most cut-and-paste tools and the original's composites look); 15 % of the cut-outs wear a
  patch of the room itself as texture, so only the comparison with bg can find them;
- mask: exactly the pixels where the pasted alpha is >= 0.5 (more object than background),
  0/255 (JPEG q95, or PNG if lossless). Not alpha > 0: that labels the half-covered rim as
  object, and a model trained on it draws every silhouette about a pixel too fat;
- depth: the room's camera-z depth with the object's depth z written over the mask, min-max
  normalised per image, near = 0 (dark), far = 255 (JPEG q75 like the original, or PNG).

Naming follows the original exactly (see `depthkit.source.layout`): fg index g lives in group
GGG = 10 * (g // 10) + 1, and its sample at flip f (0/1) and position p (0-based) is
NNN = (g % 10) * 40 + f * 20 + p + 1. Every fg keeps the original's 40 slots (20 positions
per flip), so `--positions P` must be at most 20 and slots P..19 are left empty when P < 20;
the reader's derivation fg = GGG - 1 + (NNN - 1) // 40, flip = (NNN - 1) % 40 >= 20 is then
the original's for any P, and P = 20 reproduces the original's 1..400 per group.

Determinism: every random draw comes from a generator seeded by (seed, role, ids) through
numpy's SeedSequence, so the output bytes depend on the seed and counts only, never on
--workers or on the order tasks finish in.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from functools import lru_cache
from io import BytesIO
from pathlib import Path

import numpy as np
from PIL import Image

from depthkit.core.atomic import write_atomic
from depthkit.core.errors import DepthkitError
from depthkit.core.progress import progress_bar
from depthkit.synth.scene import Scene, render_room
from depthkit.synth.sprites import Sprite, render_sprite
from depthkit.synth.writers import DatasetWriter, open_writer

log = logging.getLogger(__name__)

MAX_POSITIONS = 20  # slots per flip in the original naming
FG_PER_GROUP = 10
BG_QUALITY, FGBG_QUALITY, MASK_QUALITY, DEPTH_QUALITY = 95, 95, 95, 75  # as the original
ARCHIVES = ("7z", "zip")
CONFIG_NAME = "synth.json"

# Layout folder names of the original dataset.
BG_DIR, FGBG_DIR, MASK_DIR, DEPTH_DIR = "bg_final", "fg_bg", "fg_bg_mask", "Output"

HARD_PASTE = 0.5  # share of pastes with a hard 0/1 alpha
CAMOUFLAGE = 0.15  # share of cut-outs textured with a patch of their own room

# SeedSequence spawn-key roles.
_ROLE_BG, _ROLE_FG, _ROLE_SAMPLE = 0, 1, 2


@dataclass(frozen=True)
class SynthConfig:
    """What to generate. Counts follow the original's bg x fg x 2 flips x positions."""

    bgs: int = 4
    fgs: int = 10
    positions: int = 2
    res: int = 224
    seed: int = 0
    archive: str | None = None  # None: folders; "7z": the original archive set; "zip": one zip
    lossless: bool = False  # PNG (exact) instead of JPEG for masks and depth

    def validate(self) -> None:
        """One-line DepthkitError naming the bad option."""
        if self.bgs < 1:
            raise DepthkitError(f"--bgs must be at least 1, got {self.bgs}")
        if not 1 <= self.fgs <= 1000:
            raise DepthkitError(f"--fgs must be in 1..1000 (GGG has 3 digits), got {self.fgs}")
        if not 1 <= self.positions <= MAX_POSITIONS:
            raise DepthkitError(
                f"--positions must be in 1..{MAX_POSITIONS} (the original naming has 20 slots "
                f"per flip), got {self.positions}")
        if not 16 <= self.res <= 4096:
            raise DepthkitError(f"--res must be in 16..4096, got {self.res}")
        if self.seed < 0:
            raise DepthkitError(f"--seed must be non-negative, got {self.seed}")
        if self.archive not in (None, *ARCHIVES):
            raise DepthkitError(
                f"--archive must be one of {', '.join(ARCHIVES)}, got {self.archive}")

    @property
    def samples(self) -> int:
        return self.bgs * self.fgs * 2 * self.positions


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


@dataclass(frozen=True)
class SynthResult:
    """Summary of a synth run."""

    samples: int  # samples written by this run
    skipped: int  # samples already complete on disk (folder resume)
    backgrounds: int
    seconds: float
    outputs: list[Path]


# --- naming -------------------------------------------------------------------------------


def group_of(fg: int) -> int:
    """GGG folder of a 0-based global fg index: 1, 11, ..., 91, 101, ..."""
    return fg // FG_PER_GROUP * FG_PER_GROUP + 1


def nnn_of(fg: int, flip: bool, pos: int) -> int:
    """NNN file number of (fg, flip, 0-based position) in the original's 40-slot scheme."""
    if not 0 <= pos < MAX_POSITIONS:
        raise ValueError(f"position {pos} outside 0..{MAX_POSITIONS - 1}")
    return (fg % FG_PER_GROUP) * 2 * MAX_POSITIONS + int(flip) * MAX_POSITIONS + pos + 1


def sample_paths(bg: int, fg: int, flip: bool, pos: int, lossless: bool) -> tuple[str, str, str]:
    """Relative paths (fgbg, mask, depth) of one sample in the original layout."""
    rel = f"{bg:03d}/{group_of(fg):03d}/{nnn_of(fg, flip, pos):03d}"
    ext = "png" if lossless else "jpg"
    return f"{FGBG_DIR}/{rel}.jpg", f"{MASK_DIR}/{rel}.{ext}", f"{DEPTH_DIR}/{rel}.{ext}"


def bg_path(bg: int) -> str:
    """Relative path of a background image."""
    return f"{BG_DIR}/{bg:03d}.jpg"


# --- rendering ----------------------------------------------------------------------------


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


@lru_cache(maxsize=4)
def scene_for(seed: int, bg: int, res: int) -> Scene:
    """The room of background `bg` (cached: many samples share it)."""
    return render_room(_rng(seed, _ROLE_BG, bg), res)


@lru_cache(maxsize=2048)
def _sprite_rgba(seed: int, fg: int, res: int, flip: bool) -> tuple[Image.Image, Sprite]:
    sprite = sprite_for(seed, fg, res)
    rgba = np.dstack([sprite.rgb, sprite.alpha])
    if flip:
        rgba = rgba[:, ::-1]
    return Image.fromarray((rgba * 255 + 0.5).astype(np.uint8), "RGBA"), sprite


@lru_cache(maxsize=2048)
def sprite_for(seed: int, fg: int, res: int) -> Sprite:
    """The cut-out of foreground `fg`, drawn at least 64 px (and res px) tall."""
    return render_sprite(_rng(seed, _ROLE_FG, fg), max(64, res))


def normalize_depth(depth: np.ndarray) -> np.ndarray:
    """Min-max normalise to uint8 per image: nearest = 0 (dark), farthest = 255."""
    lo, hi = float(depth.min()), float(depth.max())
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    return np.round((depth - lo) * scale).astype(np.uint8)


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


def render_sample(cfg: SynthConfig, bg: int, fg: int, flip: bool, pos: int) -> Composite:
    """Render sample (bg, fg, flip, pos) of a config; pure function of its arguments."""
    scene = scene_for(cfg.seed, bg, cfg.res)
    img, sprite = _sprite_rgba(cfg.seed, fg, cfg.res, flip)
    return compose(scene, img, sprite, _rng(cfg.seed, _ROLE_SAMPLE, bg, fg, int(flip), pos))


def encode_image(arr: np.ndarray, fmt: str, quality: int = 95) -> bytes:
    """JPEG (quality) or PNG bytes of a uint8 array (gray or RGB)."""
    buf = BytesIO()
    if fmt == "png":
        Image.fromarray(arr).save(buf, "PNG", compress_level=1)
    else:
        Image.fromarray(arr).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def encode_sample(comp: Composite, lossless: bool) -> tuple[bytes, bytes, bytes]:
    """Encoded (fgbg, mask, depth) as the original stored them (or PNG targets if lossless)."""
    fmt = "png" if lossless else "jpeg"
    mask8 = comp.mask.astype(np.uint8) * 255
    return (encode_image(comp.fgbg, "jpeg", FGBG_QUALITY),
            encode_image(mask8, fmt, MASK_QUALITY),
            encode_image(normalize_depth(comp.depth), fmt, DEPTH_QUALITY))


# --- tasks and the driver -----------------------------------------------------------------


@dataclass(frozen=True)
class _Task:
    cfg: SynthConfig
    bg: int
    fgs: tuple[int, ...]
    with_bg: bool


def _run_task(task: _Task) -> list[tuple[str, bytes]]:
    """Render and encode every sample of one (bg, fg chunk): [(relative path, bytes)]."""
    cfg = task.cfg
    files: list[tuple[str, bytes]] = []
    if task.with_bg:
        files.append((bg_path(task.bg), encode_image(
            scene_for(cfg.seed, task.bg, cfg.res).image, "jpeg", BG_QUALITY)))
    for fg in task.fgs:
        for flip in (False, True):
            for pos in range(cfg.positions):
                data = encode_sample(render_sample(cfg, task.bg, fg, flip, pos), cfg.lossless)
                paths = sample_paths(task.bg, fg, flip, pos, cfg.lossless)
                files.extend(zip(paths, data, strict=True))
    return files


def bg_ids(cfg: SynthConfig) -> list[int]:
    """Background ids written: 1..bgs (BBB)."""
    return list(range(1, cfg.bgs + 1))


def _tasks(cfg: SynthConfig) -> list[_Task]:
    """One task per (bg, fg), in output order: small enough to resume and balance well."""
    return [_Task(cfg, bg, (fg,), fg == 0) for bg in bg_ids(cfg) for fg in range(cfg.fgs)]


def _task_done(out: Path, task: _Task) -> bool:
    """A folder task is complete when all its files exist (writes are atomic)."""
    cfg = task.cfg
    paths = [bg_path(task.bg)] if task.with_bg else []
    for fg in task.fgs:
        for flip in (False, True):
            for pos in range(cfg.positions):
                paths.extend(sample_paths(task.bg, fg, flip, pos, cfg.lossless))
    return all((out / p).is_file() for p in paths)


def _check_config_stamp(out: Path, cfg: SynthConfig) -> None:
    """Refuse to mix two configs in one folder; write the stamp (atomically) otherwise."""
    stamp = out / CONFIG_NAME
    mine = asdict(cfg)
    if stamp.is_file():
        try:
            theirs = json.loads(stamp.read_text())
        except (OSError, json.JSONDecodeError):
            theirs = None
        if theirs != mine:
            raise DepthkitError(
                f"{out} holds a synth dataset made with other options ({stamp}); "
                "use another OUT folder or delete it")
    write_atomic(stamp, (json.dumps(mine, indent=1) + "\n").encode(), fsync=False)


def _results(tasks: list[_Task], workers: int) -> Iterator[list[tuple[str, bytes]]]:
    """Task results in task order, from a process pool when workers > 1."""
    if workers <= 1 or len(tasks) <= 1:
        for task in tasks:
            yield _run_task(task)
        return
    # forkserver: safe even when the caller has threads (torch, rich) running.
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    with multiprocessing.get_context(method).Pool(workers) as pool:
        # Keep each background's tasks on one worker when there are enough backgrounds, so
        # each room is rendered once rather than once per worker.
        per_bg = sum(1 for t in tasks if t.bg == tasks[0].bg)
        bgs = len(tasks) // per_bg
        chunksize = min(per_bg, 20) if bgs >= 2 * workers else 1  # <= 800 samples in flight
        yield from pool.imap(_run_task, tasks, chunksize=chunksize)


def synthesize(out: str | Path, cfg: SynthConfig, workers: int = 1,
               progress: bool = True) -> SynthResult:
    """Write a synthetic dataset into folder `out` (created); see the module docstring.

    Folder output resumes: samples whose files all exist are skipped. Archive output is
    always rewritten (temp names, renamed when complete).
    """
    cfg.validate()
    if workers < 1:
        raise DepthkitError(f"--workers must be at least 1, got {workers}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DepthkitError(f"output {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    _check_config_stamp(out, cfg)
    tasks = _tasks(cfg)
    todo = tasks if cfg.archive else [t for t in tasks if not _task_done(out, t)]
    per_task = [len(t.fgs) * 2 * cfg.positions for t in todo]
    skipped = cfg.samples - sum(per_task)
    start = time.perf_counter()
    writer: DatasetWriter = open_writer(out, cfg.archive)
    try:
        with progress_bar("synth", total=sum(per_task), unit="samples",
                          enabled=progress) as advance:
            for n, files in zip(per_task, _results(todo, workers), strict=True):
                for rel, data in files:
                    writer.write(rel, data)
                advance(n)
    except BaseException:
        writer.abort()
        raise
    outputs = writer.close()
    seconds = time.perf_counter() - start
    log.info("synth: %d samples in %.1f s", sum(per_task), seconds)
    return SynthResult(samples=sum(per_task), skipped=skipped, backgrounds=cfg.bgs,
                       seconds=seconds, outputs=outputs)
