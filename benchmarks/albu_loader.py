"""The way a competent PyTorch user writes this loader today, for comparison (not library API).

albumentations 2.0.8 `A.Compose` with `additional_targets={"bg": "image", "depth": "mask"}`, so
ONE draw of the geometry covers bg, fgbg, mask and depth and the colour ops touch bg and fgbg
only; cv2 decoding from the original folder layout; a torch DataLoader with worker processes.
The list and its probabilities and ranges come from depthkit's AugmentConfig (the original
project's albumentations list). Where albumentations differs:

- depth is a "mask" target, so it is warped with nearest-neighbour interpolation like the mask
  (albumentations has one interpolation for all mask targets; depthkit warps depth linearly);
- RandomRotate90 draws k in {0, 1, 2, 3}; its p is scaled by 4/3 so that a real rotation
  (k in {1, 2, 3}) happens with depthkit's p_rot90;
- the colour ranges are albumentations' own units (additive shifts), mapped so that depthkit's
  defaults give albumentations' defaults, which is what the original used.

Needs the `bench` extra: `pip install -e .[bench]` (albumentations, opencv-python-headless).
"""

from __future__ import annotations

from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from benchmarks.baseline_loader import sample_paths
from depthkit.loader.augment import AugmentConfig
from depthkit.shard.schema import MASK_THRESHOLD_U8


def compose(cfg: AugmentConfig, res: int) -> A.Compose:
    """AugmentConfig as one albumentations Compose over bg, fgbg (image), mask and depth."""
    pick_bc = cfg.p_brightness_contrast
    return A.Compose([
        A.Resize(res, res),
        A.OneOf([
            A.RandomBrightnessContrast(brightness_limit=cfg.brightness,
                                       contrast_limit=cfg.contrast, p=pick_bc),
            A.HueSaturationValue(hue_shift_limit=cfg.hue, sat_shift_limit=cfg.saturation * 100,
                                 val_shift_limit=cfg.value * 100, p=1 - pick_bc),
        ], p=cfg.p_color),
        A.ToGray(p=cfg.p_gray),
        A.HorizontalFlip(p=cfg.p_hflip),
        A.RandomRotate90(p=min(1.0, cfg.p_rot90 * 4 / 3)),
        A.Affine(scale=(1 - cfg.scale, 1 + cfg.scale),
                 translate_percent=(-cfg.shift, cfg.shift), rotate=(-cfg.rotate, cfg.rotate),
                 interpolation=cv2.INTER_LINEAR, mask_interpolation=cv2.INTER_NEAREST,
                 border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=0,
                 p=cfg.p_shift_scale_rotate),
        A.GridDistortion(num_steps=cfg.grid_steps, distort_limit=cfg.grid_distort,
                         interpolation=cv2.INTER_LINEAR, mask_interpolation=cv2.INTER_NEAREST,
                         p=cfg.p_grid),
    ], additional_targets={"bg": "image", "depth": "mask"},
        is_check_shapes=False)  # a background may be smaller than its fgbg: Resize comes first


class AlbuDataset(Dataset):
    """One sample: four cv2 reads, one Compose call, HWC uint8 -> CHW float tensors."""

    def __init__(self, root: Path, res: int, augment: AugmentConfig, norm: dict) -> None:
        self.items = sample_paths(Path(root))
        self.transform = compose(augment, res)
        self.mean = {k: np.float32(v["mean"]) * 255 for k, v in norm.items()}
        self.scale = {k: 1 / (np.float32(v["std"]) * 255) for k, v in norm.items()}

    def __len__(self) -> int:
        return len(self.items)

    def _rgb(self, path: Path) -> np.ndarray:
        return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        bgid, bg, fgbg, mask, depth = self.items[i]
        out = self.transform(image=self._rgb(fgbg), bg=self._rgb(bg),
                             mask=cv2.imread(str(mask), cv2.IMREAD_GRAYSCALE),
                             depth=cv2.imread(str(depth), cv2.IMREAD_GRAYSCALE))

        def normalised(key: str, image: np.ndarray) -> torch.Tensor:
            x = (image.astype(np.float32) - self.mean[key]) * self.scale[key]
            return torch.from_numpy(x.transpose(2, 0, 1).copy())

        return {
            "bg": normalised("bg", out["bg"]),
            "fgbg": normalised("fgbg", out["image"]),
            "mask": torch.from_numpy((out["mask"] >= MASK_THRESHOLD_U8).astype(np.float32))[None],
            "depth": torch.from_numpy(out["depth"].astype(np.float32) / 255)[None],
            "bgid": torch.tensor(bgid),
        }


def _one_cv2_thread(_: int) -> None:
    cv2.setNumThreads(1)  # each worker is one process on one core: no thread pools inside


def albu_loader(root: Path, res: int, batch_size: int, augment: AugmentConfig, norm: dict,
                workers: int = 2) -> DataLoader:
    """Shuffled, drop_last, persistent workers: iterate it once per epoch."""
    return DataLoader(AlbuDataset(root, res, augment, norm), batch_size=batch_size,
                      shuffle=True, num_workers=workers, drop_last=True,
                      persistent_workers=workers > 0, worker_init_fn=_one_cv2_thread)
