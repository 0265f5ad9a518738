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

Naming follows the original exactly (see `depthkit.source.naming`): fg index g lives in group
GGG = 10 * (g // 10) + 1, and its sample at flip f (0/1) and position p (0-based) is
NNN = (g % 10) * 40 + f * 20 + p + 1. Every fg keeps the original's 40 slots (20 positions
per flip), so `--positions P` must be at most 20 and slots P..19 are left empty when P < 20;
the reader's derivation fg = GGG - 1 + (NNN - 1) // 40, flip = (NNN - 1) % 40 >= 20 is then
the original's for any P, and P = 20 reproduces the original's 1..400 per group.

Determinism: every random draw comes from a generator seeded by (seed, role, ids) through
numpy's SeedSequence, so the output bytes depend on the seed and counts only, never on
--workers or on the order render jobs finish in.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from functools import lru_cache
from io import BytesIO
from pathlib import Path

import numpy as np
from PIL import Image

from depthkit.core.atomic import write_atomic
from depthkit.core.diskspace import SpaceUse, block_size, on_disk_full
from depthkit.core.errors import DepthkitError
from depthkit.core.lock import RunLock
from depthkit.core.pool import ordered_map, worker_pool
from depthkit.core.progress import progress_bar
from depthkit.source import (
    BG,
    DEPTH,
    FG_PER_GROUP,
    FGBG,
    FOLDER_OF,
    MASK,
    SLOTS_PER_FG,
    SLOTS_PER_FLIP,
)
from depthkit.synth.compose import Composite, compose
from depthkit.synth.scene import Scene, render_room
from depthkit.synth.sprites import Sprite, render_sprite
from depthkit.synth.writers import DatasetWriter, open_writer

log = logging.getLogger(__name__)

MAX_POSITIONS = SLOTS_PER_FLIP  # positions per flip: the original naming's slots
BG_QUALITY, FGBG_QUALITY, MASK_QUALITY, DEPTH_QUALITY = 95, 95, 95, 75  # as the original
ARCHIVES = ("7z", "zip")
CONFIG_NAME = "synth.json"

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
    # None: every fg in every room (the original). K: each room gets K of the fgs (all of them
    # when K >= fgs), the K after the previous room's (wrapping): many rooms, few samples each.
    fgs_per_bg: int | None = None

    def validate(self) -> None:
        """One-line DepthkitError naming the bad option."""
        if self.bgs < 1:
            raise DepthkitError(f"--bgs must be at least 1, got {self.bgs}")
        if not 1 <= self.fgs <= 1000:
            raise DepthkitError(f"--fgs must be in 1..1000 (GGG has 3 digits), got {self.fgs}")
        if not 1 <= self.positions <= MAX_POSITIONS:
            raise DepthkitError(
                f"--positions must be in 1..{MAX_POSITIONS} (the original naming has "
                f"{SLOTS_PER_FLIP} slots per flip), got {self.positions}")
        if not 16 <= self.res <= 4096:
            raise DepthkitError(f"--res must be in 16..4096, got {self.res}")
        if self.fgs_per_bg is not None and self.fgs_per_bg < 1:
            raise DepthkitError(f"--fgs-per-bg must be at least 1, got {self.fgs_per_bg}")
        if self.seed < 0:
            raise DepthkitError(f"--seed must be non-negative, got {self.seed}")
        if self.archive not in (None, *ARCHIVES):
            raise DepthkitError(
                f"--archive must be one of {', '.join(ARCHIVES)}, got {self.archive}")

    @property
    def samples(self) -> int:
        return self.bgs * self.per_bg * 2 * self.positions

    @property
    def per_bg(self) -> int:
        """How many fgs each room is composed with."""
        return min(self.fgs_per_bg or self.fgs, self.fgs)

    def fgs_of(self, bg: int) -> list[int]:
        """The fg indices that room `bg` (1-based) is composed with, ascending."""
        start = (bg - 1) * self.per_bg
        return sorted((start + j) % self.fgs for j in range(self.per_bg))


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
    return (fg % FG_PER_GROUP) * SLOTS_PER_FG + int(flip) * SLOTS_PER_FLIP + pos + 1


def sample_paths(bg: int, fg: int, flip: bool, pos: int, lossless: bool) -> tuple[str, str, str]:
    """Relative paths (fgbg, mask, depth) of one sample in the original layout."""
    rel = f"{bg:03d}/{group_of(fg):03d}/{nnn_of(fg, flip, pos):03d}"
    ext = "png" if lossless else "jpg"
    return (f"{FOLDER_OF[FGBG]}/{rel}.jpg", f"{FOLDER_OF[MASK]}/{rel}.{ext}",
            f"{FOLDER_OF[DEPTH]}/{rel}.{ext}")


def bg_path(bg: int) -> str:
    """Relative path of a background image."""
    return f"{FOLDER_OF[BG]}/{bg:03d}.jpg"


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


# --- render jobs and the driver -----------------------------------------------------------


@dataclass(frozen=True)
class _RenderJob:
    """One unit of work for a worker: a background's samples for a few fgs (and its image)."""

    cfg: SynthConfig
    bg: int
    fgs: tuple[int, ...]
    with_bg: bool


def _render_job(job: _RenderJob) -> list[tuple[str, bytes]]:
    """Render and encode every sample of one (bg, fg chunk): [(relative path, bytes)]."""
    cfg = job.cfg
    files: list[tuple[str, bytes]] = []
    if job.with_bg:
        files.append((bg_path(job.bg), encode_image(
            scene_for(cfg.seed, job.bg, cfg.res).image, "jpeg", BG_QUALITY)))
    for fg in job.fgs:
        for flip in (False, True):
            for pos in range(cfg.positions):
                data = encode_sample(render_sample(cfg, job.bg, fg, flip, pos), cfg.lossless)
                paths = sample_paths(job.bg, fg, flip, pos, cfg.lossless)
                files.extend(zip(paths, data, strict=True))
    return files


def bg_ids(cfg: SynthConfig) -> list[int]:
    """Background ids written: 1..bgs (BBB)."""
    return list(range(1, cfg.bgs + 1))


def _render_jobs(cfg: SynthConfig) -> list[_RenderJob]:
    """One job per (bg, fg), in output order: small enough to resume and balance well."""
    return [_RenderJob(cfg, bg, (fg,), i == 0) for bg in bg_ids(cfg)
            for i, fg in enumerate(cfg.fgs_of(bg))]


def _job_done(out: Path, job: _RenderJob) -> bool:
    """A folder job is complete when all its files exist (writes are atomic)."""
    cfg = job.cfg
    paths = [bg_path(job.bg)] if job.with_bg else []
    for fg in job.fgs:
        for flip in (False, True):
            for pos in range(cfg.positions):
                paths.extend(sample_paths(job.bg, fg, flip, pos, cfg.lossless))
    return all((out / p).is_file() for p in paths)


def _check_config_stamp(out: Path, cfg: SynthConfig) -> None:
    """Refuse to mix two configs in one folder; write the stamp (atomically) otherwise."""
    stamp = out / CONFIG_NAME
    mine = asdict(cfg)
    if stamp.is_file():
        try:  # an option added since the stamp was written took its default there
            theirs = {**asdict(SynthConfig()), **json.loads(stamp.read_text())}
        except (OSError, json.JSONDecodeError, TypeError):
            theirs = None
        if theirs != mine:
            raise DepthkitError(
                f"{out} holds a synth dataset made with other options ({stamp}); "
                "use another OUT folder or delete it")
    write_atomic(stamp, (json.dumps(mine, indent=1) + "\n").encode(), fsync=False)


def _write_all(out: Path, cfg: SynthConfig, per_job: list[int], use: SpaceUse,
               results: Iterator[list[tuple[str, bytes]]], progress: bool) -> list[Path]:
    """Write every rendered file through one writer (aborted, nothing left, on any error)."""
    writer: DatasetWriter = open_writer(out, cfg.archive)
    try:
        with progress_bar("synth", total=sum(per_job), unit="samples",
                          enabled=progress) as advance:
            for n, files in zip(per_job, results, strict=True):
                for rel, data in files:
                    writer.write(rel, data)
                    use.add(len(data))  # a full disk's estimate of what is left
                use.items += n
                use.kept += 0 if cfg.archive else n  # an archive is rewritten whole
                advance(n)
        return writer.close()
    except BaseException:
        writer.abort()
        raise


def _results(jobs: list[_RenderJob], pool: ProcessPoolExecutor | None,
             workers: int) -> Iterator[list[tuple[str, bytes]]]:
    """Job results in job order, from `pool` when there is one (a bounded window in flight);
    without one, a job at a time (the bar moves per job, one job's files held)."""
    chunks = _chunks(jobs, workers) if pool is not None else [(job,) for job in jobs]
    tasks = ((chunk, (chunk,)) for chunk in chunks)
    for _, files in ordered_map(pool, workers, _render_chunk, tasks, []):
        yield from files


def _chunks(jobs: list[_RenderJob], workers: int) -> list[tuple[_RenderJob, ...]]:
    """Jobs grouped for the workers: a background's jobs (up to 20) together when there are
    enough backgrounds, so each room is rendered once rather than once per worker."""
    if not jobs:
        return []
    per_bg = sum(1 for t in jobs if t.bg == jobs[0].bg)
    size = min(per_bg, 20) if len(jobs) // per_bg >= 2 * workers else 1
    return [tuple(jobs[i:i + size]) for i in range(0, len(jobs), size)]


def _render_chunk(jobs: tuple[_RenderJob, ...]) -> list[list[tuple[str, bytes]]]:
    """`_render_job` of each job (one task of a worker)."""
    return [_render_job(job) for job in jobs]


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
    with RunLock(out, "synth"):  # makes OUT; a second run into it gets a one-line error
        return _synthesize(out, cfg, workers, progress)


def _synthesize(out: Path, cfg: SynthConfig, workers: int, progress: bool) -> SynthResult:
    """`synthesize` once OUT is locked."""
    _check_config_stamp(out, cfg)
    jobs = _render_jobs(cfg)
    todo = jobs if cfg.archive else [t for t in jobs if not _job_done(out, t)]
    per_job = [len(t.fgs) * 2 * cfg.positions for t in todo]
    skipped = cfg.samples - sum(per_job)
    start = time.perf_counter()
    use = SpaceUse(sum(per_job), block=1 if cfg.archive else block_size(out))
    with (worker_pool(workers if workers > 1 and len(todo) > 1 else 0) as pool,  # before the bar
          on_disk_full(out, use.needs, resumes=cfg.archive is None)):
        outputs = _write_all(out, cfg, per_job, use, _results(todo, pool, workers), progress)
    seconds = time.perf_counter() - start
    log.info("synth: %d samples in %.1f s", sum(per_job), seconds)
    return SynthResult(samples=sum(per_job), skipped=skipped, backgrounds=cfg.bgs,
                       seconds=seconds, outputs=outputs)
