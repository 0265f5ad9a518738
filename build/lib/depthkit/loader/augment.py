"""Augmentations: one geometry per sample for bg, fgbg, mask and depth; colour on inputs only.

The original project's list (albumentations), done so that inputs and targets stay aligned:

- resize to the training resolution (folded into the warp; shards are stored at that size);
- one of brightness/contrast or hue/saturation/value, and to-gray: inputs (bg, fgbg) only,
  the same draw for both (one scene seen by one camera), never mask or depth. DALI draws the
  parameters; `depthkit.loader.photometric` applies them in torch as one 3x3 colour matrix per
  sample (~0.1 ms per 224 px image batched; DALI's CPU `hsv`/`color_twist` cost ~1 ms);
- horizontal flip, rotate-by-90 and shift-scale-rotate: composed into ONE affine matrix per
  sample (`fn.transforms.*`), applied by one `warp_affine` per image with that same matrix;
  the mask is warped with nearest-neighbour interpolation, so it stays binary;
- grid distortion: no DALI op exists on both backends, so DALI only draws its parameters and
  `depthkit.loader.gridwarp` applies it to all four images at once (inside the pipeline on the
  CPU backend, batched in torch after it on the GPU).

Functions named `dali_*` build DALI graph nodes and must be called inside a pipeline definition.
A sample that draws no geometry is not warped at all, and one that draws only flip/rotate-90 is
warped with nearest-neighbour sampling (exact for those, ~3x cheaper on the CPU): the pipeline
routes samples with DALI conditionals.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from nvidia.dali import fn, types


@dataclass(frozen=True)
class AugmentConfig:
    """Every augmentation: its probability (per sample) and its parameters.

    Defaults follow the original project (albumentations defaults, p=0.5 for the geometric ops).
    `AugmentConfig.none()` switches everything off; use `dataclasses.replace` to tune one op.
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
    p_rot90: float = 0.5  # rotate by k * 90 degrees, k uniform in {1, 2, 3}
    p_shift_scale_rotate: float = 0.5
    shift: float = 0.0625  # shift drawn from [-s, s] x side, per axis
    scale: float = 0.1  # zoom drawn from [1 - s, 1 + s]
    rotate: float = 45.0  # angle drawn from [-r, r] degrees
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


# --------------------------------------------------------------------------- DALI graph helpers


def _coin(p: float) -> Any:
    """Per-sample boolean node, True with probability p."""
    return fn.cast(fn.random.coin_flip(probability=float(p), dtype=types.UINT8), dtype=types.BOOL)


def _uniform(lo: float, hi: float, shape: tuple[int, ...] | None = None) -> Any:
    if shape is None:
        return fn.random.uniform(range=[float(lo), float(hi)])
    return fn.random.uniform(range=[float(lo), float(hi)], shape=list(shape))


def _select(flag: Any, value: Any, default: float) -> Any:
    """`value` where flag is set, else `default` (arithmetic, so it works per sample)."""
    f = fn.cast(flag, dtype=types.FLOAT)
    return value * f + default * (1.0 - f)


def dali_geometry(cfg: AugmentConfig, res: int) -> tuple[Any, Any, Any]:
    """Draw one geometry per sample: (forward 2x3 matrix, any-op flag, shift-scale-rotate flag).

    The matrix (res-pixel coordinates) maps a point of the res x res image to its place after
    flip, then rotate-90, then shift-scale-rotate, all about the image centre. Without
    shift-scale-rotate it maps pixel centres onto pixel centres (nearest sampling is exact).
    """
    c = res / 2.0
    center = [c, c]
    flip, rot, ssr = _coin(cfg.p_hflip), _coin(cfg.p_rot90), _coin(cfg.p_shift_scale_rotate)

    sx = _select(flip, -1.0, 1.0)
    m_flip = fn.transforms.scale(scale=fn.stack(sx, sx * 0.0 + 1.0), center=center)

    k = fn.cast(fn.random.choice([1, 2, 3]), dtype=types.FLOAT)
    m_rot90 = fn.transforms.rotation(angle=_select(rot, k * 90.0, 0.0), center=center)

    zoom = _select(ssr, _uniform(1.0 - cfg.scale, 1.0 + cfg.scale), 1.0)
    angle = _select(ssr, _uniform(-cfg.rotate, cfg.rotate), 0.0)
    shift = _select(ssr, _uniform(-cfg.shift * res, cfg.shift * res, (2,)), 0.0)
    m_ssr = fn.transforms.combine(
        fn.transforms.scale(scale=fn.stack(zoom, zoom), center=center),
        fn.transforms.rotation(angle=angle, center=center),
        fn.transforms.translation(offset=shift),
    )
    matrix = fn.transforms.combine(m_flip, m_rot90, m_ssr)
    return matrix, flip | rot | ssr, ssr


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


def dali_color(cfg: AugmentConfig) -> Any:
    """Draw one colour change per sample: float (4,) [brightness, contrast, hue, saturation].

    One of brightness/contrast or HSV fires with p_color; to-gray (saturation 0) with p_gray.
    [1, 1, 0, 1] means no change; `depthkit.loader.photometric.apply_color` applies it to bg
    and fgbg.
    """
    color = _coin(cfg.p_color)
    which = _uniform(0.0, 1.0)
    bc = color & (which < cfg.p_brightness_contrast)
    hsv = color & (which >= cfg.p_brightness_contrast)
    gray = _coin(cfg.p_gray)
    brightness = _select(bc, _uniform(1 - cfg.brightness, 1 + cfg.brightness), 1.0)
    contrast = _select(bc, _uniform(1 - cfg.contrast, 1 + cfg.contrast), 1.0)
    value = _select(hsv, _uniform(1 - cfg.value, 1 + cfg.value), 1.0)
    hue = _select(hsv, _uniform(-cfg.hue, cfg.hue), 0.0)
    saturation = _select(hsv, _uniform(1 - cfg.saturation, 1 + cfg.saturation), 1.0)
    saturation = saturation * _select(gray, 0.0, 1.0)
    return fn.stack(brightness * value, contrast, hue, saturation)


def dali_grid(cfg: AugmentConfig) -> tuple[Any, Any]:
    """Per-sample grid-distortion draw: (float (2, steps) cell factors, drawn flag).

    Row 0 distorts x, row 1 distorts y (all zero when not drawn); `depthkit.loader.gridwarp`
    applies them.
    """
    drawn = _coin(cfg.p_grid)
    draw = _uniform(-cfg.grid_distort, cfg.grid_distort, (2, cfg.grid_steps))
    return draw * fn.cast(drawn, dtype=types.FLOAT), drawn
