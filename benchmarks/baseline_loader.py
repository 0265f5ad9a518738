"""The plain-PyTorch way, for comparison (not library API): a DataLoader over the original folder
layout, Pillow decoding, and per-image augmentation as the original project did it.

Each of bg, fgbg, mask and depth is decoded with Pillow and transformed by its own call (the
original's albumentations calls, here with Pillow/numpy since cv2 is not a dependency): resize,
one-of brightness/contrast or HSV and to-gray (inputs), shift-scale-rotate, grid distortion
(Pillow MESH), rotate-90 and flip, each drawn independently per image, as in the original, so
the four images do NOT stay aligned. Probabilities and ranges come from the same AugmentConfig.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageEnhance
from torch.utils.data import DataLoader, Dataset

from depthkit.loader.augment import AugmentConfig
from depthkit.shard.schema import MASK_THRESHOLD


def _ssr(im: Image.Image, cfg: AugmentConfig, rng: random.Random, res: int, nearest: bool):
    angle = math.radians(rng.uniform(-cfg.rotate, cfg.rotate))
    zoom = rng.uniform(1 - cfg.scale, 1 + cfg.scale)
    dx, dy = (rng.uniform(-cfg.shift, cfg.shift) * res for _ in range(2))
    c = res / 2
    cos, sin = math.cos(angle) / zoom, math.sin(angle) / zoom
    # inverse map: output (x, y) -> input
    matrix = (cos, sin, c - cos * (c + dx) - sin * (c + dy),
              -sin, cos, c + sin * (c + dx) - cos * (c + dy))
    return im.transform(im.size, Image.AFFINE, matrix, Image.NEAREST if nearest else Image.BILINEAR)


def _grid(im: Image.Image, cfg: AugmentConfig, rng: random.Random, nearest: bool):
    w, h = im.size
    steps = cfg.grid_steps

    def knots(size: int) -> list[float]:
        widths = [1 + rng.uniform(-cfg.grid_distort, cfg.grid_distort) for _ in range(steps)]
        total = sum(widths)
        return [size * sum(widths[:i]) / total for i in range(steps + 1)]

    xs, ys = knots(w), knots(h)
    mesh = []
    for j in range(steps):
        for i in range(steps):
            box = (w * i // steps, h * j // steps, w * (i + 1) // steps, h * (j + 1) // steps)
            quad = (xs[i], ys[j], xs[i], ys[j + 1], xs[i + 1], ys[j + 1], xs[i + 1], ys[j])
            mesh.append((box, quad))
    return im.transform(im.size, Image.MESH, mesh, Image.NEAREST if nearest else Image.BILINEAR)


def _color(im: Image.Image, cfg: AugmentConfig, rng: random.Random) -> Image.Image:
    if rng.random() < cfg.p_color:
        if rng.random() < cfg.p_brightness_contrast:
            im = ImageEnhance.Brightness(im).enhance(rng.uniform(1 - cfg.brightness,
                                                                 1 + cfg.brightness))
            im = ImageEnhance.Contrast(im).enhance(rng.uniform(1 - cfg.contrast, 1 + cfg.contrast))
        else:
            hsv = np.asarray(im.convert("HSV")).astype(np.float32)
            hsv[..., 0] = (hsv[..., 0] + rng.uniform(-cfg.hue, cfg.hue) * 256 / 360) % 256
            hsv[..., 1] *= rng.uniform(1 - cfg.saturation, 1 + cfg.saturation)
            hsv[..., 2] *= rng.uniform(1 - cfg.value, 1 + cfg.value)
            im = Image.fromarray(np.clip(hsv, 0, 255).astype(np.uint8), "HSV").convert("RGB")
    if rng.random() < cfg.p_gray:
        im = im.convert("L").convert("RGB")
    return im


def augment_image(im: Image.Image, cfg: AugmentConfig, rng: random.Random, res: int,
                  inputs: bool, nearest: bool = False) -> Image.Image:
    """One image, its own draws (the original's per-image albumentations call)."""
    if im.size != (res, res):
        im = im.resize((res, res), Image.BILINEAR)
    if inputs:
        im = _color(im, cfg, rng)
    if rng.random() < cfg.p_shift_scale_rotate:
        im = _ssr(im, cfg, rng, res, nearest)
    if rng.random() < cfg.p_grid:
        im = _grid(im, cfg, rng, nearest)
    if rng.random() < cfg.p_rot90:
        im = im.transpose([Image.ROTATE_90, Image.ROTATE_180, Image.ROTATE_270][rng.randrange(3)])
    if rng.random() < cfg.p_hflip:
        im = im.transpose(Image.FLIP_LEFT_RIGHT)
    return im


def sample_paths(root: Path) -> list[tuple[int, Path, Path, Path, Path]]:
    """(bg id, bg, fgbg, mask, depth) of every fg_bg/BBB/GGG/NNN.jpg of the original layout."""
    out = []
    for path in sorted((root / "fg_bg").glob("*/*/*.jpg")):
        rel = path.relative_to(root / "fg_bg")
        out.append((int(rel.parts[0]), root / "bg_final" / f"{rel.parts[0]}.jpg", path,
                    root / "fg_bg_mask" / rel, root / "Output" / rel))
    return out


class OriginalLayoutDataset(Dataset):
    """fg_bg/BBB/GGG/NNN.jpg with its mask, depth and bg_final/BBB.jpg, decoded per sample."""

    def __init__(self, root: Path, res: int, augment: AugmentConfig, norm: dict, seed: int = 0):
        self.res, self.augment, self.seed = res, augment, seed
        self.items = sample_paths(Path(root))
        self.mean = {k: torch.tensor(v["mean"]).view(3, 1, 1) for k, v in norm.items()}
        self.std = {k: torch.tensor(v["std"]).view(3, 1, 1) for k, v in norm.items()}

    def __len__(self) -> int:
        return len(self.items)

    def _open(self, path: Path, mode: str) -> Image.Image:
        with Image.open(path) as im:
            return im.convert(mode)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        bgid, bg_path, fgbg_path, mask_path, depth_path = self.items[i]
        rng = random.Random(self.seed * 1_000_003 + i)
        cfg, res = self.augment, self.res
        bg = augment_image(self._open(bg_path, "RGB"), cfg, rng, res, inputs=True)
        fgbg = augment_image(self._open(fgbg_path, "RGB"), cfg, rng, res, inputs=True)
        mask = augment_image(self._open(mask_path, "L"), cfg, rng, res, inputs=False,
                             nearest=True)
        depth = augment_image(self._open(depth_path, "L"), cfg, rng, res, inputs=False)

        def tensor(im: Image.Image) -> torch.Tensor:
            a = torch.from_numpy(np.array(im))
            return (a[None] if a.ndim == 2 else a.permute(2, 0, 1)).float() / 255

        return {
            "bg": (tensor(bg) - self.mean["bg"]) / self.std["bg"],
            "fgbg": (tensor(fgbg) - self.mean["fgbg"]) / self.std["fgbg"],
            "mask": (tensor(mask) >= MASK_THRESHOLD).float(),
            "depth": tensor(depth),
            "bgid": torch.tensor(bgid),
        }


def baseline_loader(root: Path, res: int, batch_size: int, augment: AugmentConfig, norm: dict,
                    workers: int = 2) -> DataLoader:
    """The original project's DataLoader (shuffled, drop_last), with persistent workers so that
    epochs after the first pay no worker start-up: iterate it once per epoch."""
    ds = OriginalLayoutDataset(root, res, augment, norm)
    return DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=workers,
                      drop_last=True, persistent_workers=workers > 0)
