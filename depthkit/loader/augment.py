"""Augmentations: one geometry per sample for bg, fgbg, mask and depth; colour on inputs only.

The original project's list (albumentations), done so that inputs and targets stay aligned:

- resize to the training resolution (folded into the warp; shards are stored at that size);
- one of brightness/contrast or hue/saturation/value, and to-gray: inputs (bg, fgbg) only,
  the same draw for both (one scene seen by one camera), never mask or depth. DALI draws the
  parameters; `depthkit.loader.photometric` applies them in torch as one 3x3 colour matrix per
  sample (~0.1 ms per 224 px image batched; DALI's CPU `hsv`/`color_twist` cost ~1 ms);
- horizontal flip, rotate-by-90 and shift-scale-rotate: composed into ONE affine matrix per
  sample (`fn.transforms.*`), applied to every image with that same matrix; the mask is
  sampled nearest-neighbour, so it stays binary;
- grid distortion: no DALI op exists for it, so DALI only draws its parameters. On the GPU,
  `depthkit.loader.gridwarp` applies it in torch after the pipeline, batched; on the CPU,
  `depthkit.loader.cpuwarp` folds it and the affine matrix into one resampling per image.

Functions named `dali_*` build DALI graph nodes and must be called inside a pipeline definition.
A sample that draws no geometry is not warped at all, and one that draws only flip/rotate-90 is
moved with nearest-neighbour sampling or a plain copy (exact for those): on the GPU the
pipeline routes samples with DALI conditionals, on the CPU `cpuwarp` routes them itself.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from nvidia.dali import fn, types


@dataclass(frozen=True)
class AugmentConfig:
    """Every augmentation: its probability (per sample) and its parameters.

    Defaults follow the original project (albumentations defaults, p=0.5 for the geometric ops)
    except where depth trains better: no rotate-by-90 and rotations of at most 10 degrees, since
    both turn the floor into a wall and teach depth that a room has no up. `original()` is the
    original list, rotations included (`--recipe original`); `none()` switches everything off;
    use `dataclasses.replace` to tune one op.
    """

    # one of: brightness/contrast | hue/saturation/value (inputs only)
    p_color: float = 0.5  # probability that one colour op is applied
    p_brightness_contrast: float = 0.5  # given a colour op: brightness/contrast, else HSV
    brightness: float = 0.2  # brightness factor drawn from [1 - b, 1 + b]
    contrast: float = 0.2  # contrast factor drawn from [1 - c, 1 + c]
    hue: float = 20.0  # hue shift drawn from [-h, h] degrees
    saturation: float = 0.3  # saturation factor drawn from [1 - s, 1 + s]
    value: float = 0.2  # value (brightness) factor drawn from [1 - v, 1 + v]
    p_gray: float = 0.1  # to-gray on bg and fgbg (luma, kept as 3 channels)
    # geometry (bg, fgbg, mask, depth identically)
    p_hflip: float = 0.5
    p_rot90: float = 0.0  # rotate by k * 90 degrees, k uniform in {1, 2, 3} (original: 0.5)
    p_shift_scale_rotate: float = 0.5
    shift: float = 0.0625  # shift drawn from [-s, s] x side, per axis
    scale: float = 0.1  # zoom drawn from [1 - s, 1 + s]
    rotate: float = 10.0  # angle drawn from [-r, r] degrees (original: 45)
    p_grid: float = 0.5  # grid distortion (applied by depthkit.loader.gridwarp)
    grid_steps: int = 5  # cells per axis
    grid_distort: float = 0.3  # each cell's size scaled by [1 - d, 1 + d]

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.startswith("p_") and not 0.0 <= value <= 1.0:
                raise ValueError(f"AugmentConfig.{f.name} must be in [0, 1], got {value}")
        if self.grid_steps < 1:
            raise ValueError(f"AugmentConfig.grid_steps must be >= 1, got {self.grid_steps}")
        for name in ("brightness", "contrast", "saturation", "value", "scale", "grid_distort"):
            if not 0.0 <= getattr(self, name) < 1.0:
                value = getattr(self, name)
                raise ValueError(f"AugmentConfig.{name} must be in [0, 1), got {value}")

    @classmethod
    def original(cls) -> AugmentConfig:
        """The original project's list: rotate-by-90 and +-45 degree rotations as well."""
        return cls(p_rot90=0.5, rotate=45.0)

    @classmethod
    def for_recipe(cls, recipe: str) -> AugmentConfig:
        """The training augmentations of a recipe: `original()` for "original", else the
        defaults."""
        return cls.original() if recipe == "original" else cls()

    @classmethod
    def none(cls) -> AugmentConfig:
        """Every op off (validation)."""
        return cls(**{f.name: 0.0 for f in fields(cls) if f.name.startswith("p_")})

    @property
    def any_geometry(self) -> bool:
        """True when some affine op can fire (the pipeline then builds the warp branch)."""
        return max(self.p_hflip, self.p_rot90, self.p_shift_scale_rotate) > 0

    @property
    def any_color(self) -> bool:
        """True when some colour op can fire."""
        return max(self.p_color, self.p_gray) > 0


# ------------------------------------------------------------------------- per-sample draws
# DALI draws one vector of uniforms per sample (`fn.random.uniform`: one op, so its state is in
# DALI's checkpoints and the seed fixes it) and `Draws`, a batch `fn.python_function`, turns
# them into every sample's geometry matrix, colour draw and grid factors with a few numpy
# operations over the batch. Building the same numbers from per-sample DALI ops (coins, casts,
# selects, `fn.transforms.*`) cost ~0.2 ms per sample on a CPU core, a third of loading a 64 px
# sample. Conventions follow `fn.transforms`: forward 2x3 matrices in pixel coordinates (pixel
# edges at integers), rotations [[cos, -sin], [sin, cos]] about the image centre, the ops in
# the order flip, rotate-90, then shift-scale-rotate (scale, rotation, translation).

SLOTS = ("flip", "rot90", "quarter", "ssr", "zoom", "angle", "shift_x", "shift_y", "color",
         "which", "brightness", "contrast", "value", "hue", "saturation", "gray", "grid")
DRAWS = ("matrix", "drawn", "ssr", "color", "grid")  # what `Draws` returns, in this order
_COS = np.array([1.0, 0.0, -1.0, 0.0])  # cos / sin of k * 90 degrees, exactly
_SIN = np.array([0.0, 1.0, 0.0, -1.0])


def draw_size(cfg: AugmentConfig) -> int:
    """Uniforms per sample: one per slot, then the x and y grid factors."""
    return len(SLOTS) + 2 * cfg.grid_steps


def _span(u: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return lo + u * (hi - lo)


def _about(lin: np.ndarray, centre: float) -> np.ndarray:
    """(B, 3, 3) affine maps applying the linear parts lin (B, 2, 2) about (centre, centre)."""
    out = np.zeros((len(lin), 3, 3))
    out[:, :2, :2] = lin
    out[:, :2, 2] = centre - lin.sum(2) * centre
    out[:, 2, 2] = 1.0
    return out


def _then(second: np.ndarray, first: np.ndarray) -> np.ndarray:
    """The (B, 3, 3) maps `first` then `second`; einsum, not `@`: a BLAS call would start
    OpenBLAS's thread pool in DALI's thread (spinning threads, and a later fork breaks)."""
    return np.einsum("bij,bjk->bik", second, first)


def _rotation(cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    return np.stack([np.stack([cos, -sin], 1), np.stack([sin, cos], 1)], 1)


class Draws:
    """The batch python_function: uniforms (B lists of (draw_size,)) -> per sample matrix
    (2, 3), drawn and ssr (bool: any geometric op, shift-scale-rotate), colour (4,) as in
    `photometric.IDENTITY`, grid (2, steps) (zero when not drawn)."""

    def __init__(self, cfg: AugmentConfig, res: int) -> None:
        self.cfg = cfg
        self.res = res

    def __call__(self, uniforms: list[np.ndarray]) -> tuple[list[np.ndarray], ...]:
        u = np.stack(uniforms).astype(np.float64)
        slot = {name: u[:, i] for i, name in enumerate(SLOTS)}
        matrix, drawn, ssr = self.geometry(slot)
        steps = self.cfg.grid_steps
        factors = _span(u[:, len(SLOTS):], -self.cfg.grid_distort, self.cfg.grid_distort)
        grid = factors.reshape(-1, 2, steps) * (slot["grid"] < self.cfg.p_grid)[:, None, None]
        batches = (matrix.astype(np.float32), drawn, ssr, self.color(slot).astype(np.float32),
                   grid.astype(np.float32))
        return tuple([np.asarray(x) for x in b] for b in batches)

    def geometry(self, slot: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
        """(matrices (B, 2, 3), any geometric op drawn, shift-scale-rotate drawn)."""
        cfg, c, n = self.cfg, self.res / 2.0, len(slot["flip"])
        flip, rot = slot["flip"] < cfg.p_hflip, slot["rot90"] < cfg.p_rot90
        ssr = slot["ssr"] < cfg.p_shift_scale_rotate
        lin = np.zeros((n, 2, 2))
        lin[:, 0, 0], lin[:, 1, 1] = np.where(flip, -1.0, 1.0), 1.0
        m = _about(lin, c)
        quarter = np.where(rot, np.minimum(slot["quarter"] * 3, 2).astype(int) + 1, 0)
        m = _then(_about(_rotation(_COS[quarter], _SIN[quarter]), c), m)
        zoom = np.where(ssr, _span(slot["zoom"], 1 - cfg.scale, 1 + cfg.scale), 1.0)
        m = _then(_about(zoom[:, None, None] * np.eye(2), c), m)
        angle = np.radians(np.where(ssr, _span(slot["angle"], -cfg.rotate, cfg.rotate), 0.0))
        m = _then(_about(_rotation(np.cos(angle), np.sin(angle)), c), m)
        for axis, name in enumerate(("shift_x", "shift_y")):
            m[:, axis, 2] += np.where(ssr, _span(slot[name], -cfg.shift, cfg.shift), 0.0) * \
                self.res
        return m[:, :2], flip | rot | ssr, ssr

    def color(self, slot: dict[str, np.ndarray]) -> np.ndarray:
        """(B, 4) [brightness, contrast, hue, saturation]: one of brightness/contrast or HSV
        with p_color, to-gray (saturation 0) with p_gray; [1, 1, 0, 1] is no change."""
        cfg = self.cfg
        color = slot["color"] < cfg.p_color
        bc = color & (slot["which"] < cfg.p_brightness_contrast)
        hsv = color & ~bc
        brightness = np.where(bc, _span(slot["brightness"], 1 - cfg.brightness,
                                        1 + cfg.brightness), 1.0)
        contrast = np.where(bc, _span(slot["contrast"], 1 - cfg.contrast, 1 + cfg.contrast), 1.0)
        value = np.where(hsv, _span(slot["value"], 1 - cfg.value, 1 + cfg.value), 1.0)
        hue = np.where(hsv, _span(slot["hue"], -cfg.hue, cfg.hue), 0.0)
        saturation = np.where(hsv, _span(slot["saturation"], 1 - cfg.saturation,
                                         1 + cfg.saturation), 1.0)
        saturation = saturation * (slot["gray"] >= cfg.p_gray)
        return np.stack([brightness * value, contrast, hue, saturation], 1)


# --------------------------------------------------------------------------- DALI graph helpers


def dali_draws(cfg: AugmentConfig, res: int) -> dict[str, Any]:
    """Every random parameter of each sample, by `DRAWS` name: the geometry matrix
    (forward 2x3, res pixels), drawn / ssr flags, colour draw and grid factors."""
    uniforms = fn.random.uniform(range=[0.0, 1.0], shape=[draw_size(cfg)])
    nodes = fn.python_function(uniforms, function=Draws(cfg, res), num_outputs=len(DRAWS),
                               batch_processing=True)
    return {name: nodes[i] for i, name in enumerate(DRAWS)}


def dali_resize_matrix(shape: Any, res: int) -> tuple[Any, Any]:
    """Scale from an image's stored size (HWC shape node) to res x res, and 'size differs'."""
    h = fn.cast(shape[0], dtype=types.FLOAT)
    w = fn.cast(shape[1], dtype=types.FLOAT)
    matrix = fn.transforms.scale(scale=fn.stack(res / w, res / h))
    return matrix, (shape[0] != res) | (shape[1] != res)


def dali_warp(image: Any, matrix: Any, res: int, nearest: bool = False) -> Any:
    """Warp one image (HWC) with a forward matrix to res x res; the border pixel is repeated."""
    interp = types.INTERP_NN if nearest else types.INTERP_LINEAR
    return fn.warp_affine(
        image, matrix=matrix, size=[res, res], inverse_map=False, interp_type=interp
    )
