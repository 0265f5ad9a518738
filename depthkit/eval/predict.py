"""`depthkit predict`: mask and depth for real (bg, fgbg) pairs of any size.

Inputs are resized to the model's resolution (bilinear), normalised with the statistics the
model was trained with (stored in the checkpoint), and the outputs are resized back to the
fgbg's own size. Per pair, in the output folder (``<name>`` = the fgbg file's stem):

- ``<name>_mask.png``        binary mask, 0 / 255 (probability >= 0.5)
- ``<name>_depth.png``       depth, 8-bit grayscale (0 = near, 255 = far)
- ``<name>_depth_color.png`` depth through the turbo colormap (near = dark blue)
- ``<name>_side.png``        bg | fgbg | mask | colour depth, side by side

Pairs are one bg + one fgbg, or two folders of matching file stems, or one bg file and a
folder of fgbg (one background, many composites). Mismatches are refused before any work.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from depthkit.core.dist import pick_device
from depthkit.core.errors import DepthkitError
from depthkit.core.images import colorize_depth, save_image_atomic, to_uint8
from depthkit.core.normalization import normalize_images
from depthkit.eval.config import PredictConfig
from depthkit.eval.pictures import side_by_side
from depthkit.shard.schema import MASK_THRESHOLD, check_res

log = logging.getLogger(__name__)

# predict reads any photo Pillow decodes, more types than the dataset layout accepts.
PREDICT_IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
ASPECT_TOLERANCE = 0.05  # bg and fgbg must show the same scene: aspect ratios within 5 %




@dataclass(frozen=True)
class Prediction:
    """Model outputs at the fgbg's own size, as [0, 1] float arrays (H, W)."""

    mask_prob: np.ndarray
    depth: np.ndarray

    @property
    def mask(self) -> np.ndarray:
        return self.mask_prob >= MASK_THRESHOLD


def read_rgb(path: Path) -> np.ndarray:
    """Decode an image file to (H, W, 3) uint8 RGB; one-line DepthkitError naming the file."""
    try:
        with Image.open(path) as im:
            im.load()
            return np.asarray(im.convert("RGB"))  # alpha, if any, is dropped
    except FileNotFoundError:
        raise DepthkitError(f"image not found: {path}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise DepthkitError(f"unreadable image {path}: {err}") from None


def list_pairs(bg: Path, fgbg: Path) -> list[tuple[Path, Path]]:
    """(bg, fgbg) file pairs from two files, two folders (matching stems), or file + folder."""
    bg, fgbg = Path(bg), Path(fgbg)
    for p, opt in ((bg, "--bg"), (fgbg, "--fgbg")):
        if not p.exists():
            raise DepthkitError(f"{opt} {p}: not found")
    if fgbg.is_file():
        if not bg.is_file():
            raise DepthkitError(f"--fgbg {fgbg} is a file, so --bg must be a file too: {bg}")
        return [(bg, fgbg)]
    fg_files = images_in(fgbg)
    if not fg_files:
        raise DepthkitError(f"--fgbg {fgbg}: no images ({', '.join(PREDICT_IMAGE_EXTS)})")
    if bg.is_file():
        return [(bg, f) for f in fg_files]
    bg_by_stem = {}
    for f in images_in(bg):
        if f.stem in bg_by_stem:
            raise DepthkitError(f"two backgrounds named {f.stem}: {bg_by_stem[f.stem]} and {f}")
        bg_by_stem[f.stem] = f
    missing = [f for f in fg_files if f.stem not in bg_by_stem]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DepthkitError(f"no background for {missing[0]} in {bg}{more}")
    return [(bg_by_stem[f.stem], f) for f in fg_files]


def images_in(folder: Path) -> list[Path]:
    """Image files directly inside a folder, sorted by name."""
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in PREDICT_IMAGE_EXTS)


def check_same_scene(bg_path: Path, bg: np.ndarray, fgbg_path: Path, fgbg: np.ndarray) -> None:
    """Refuse a pair whose aspect ratios disagree (not the same scene/camera)."""
    (hb, wb), (hf, wf) = bg.shape[:2], fgbg.shape[:2]
    if abs((wb / hb) / (wf / hf) - 1) > ASPECT_TOLERANCE:
        raise DepthkitError(
            f"{fgbg_path} is {wf}x{hf} but its background {bg_path} is {wb}x{hb}: "
            "bg and fgbg must show the same scene"
        )


Norm = dict[str, dict[str, Any]]  # bg, fgbg -> {"mean", "std"}: lists, or tensors on a device


def device_norm(norm: Norm, device: torch.device) -> Norm:
    """A checkpoint's mean/std lists as float tensors on `device` (built once per run)."""
    return {k: {s: torch.tensor(v[s], dtype=torch.float32, device=device) for s in ("mean", "std")}
            for k, v in norm.items()}


def to_input(img: np.ndarray, res: int, norm: dict[str, Any], device: torch.device
             ) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, res, res) float, resized (bilinear) and normalised."""
    x = torch.from_numpy(np.array(img, copy=True)).to(device).permute(2, 0, 1)[None].float()
    x = F.interpolate(x / 255.0, size=(res, res), mode="bilinear", align_corners=False,
                      antialias=True)
    return normalize_images(x, norm["mean"], norm["std"])


@torch.no_grad()
def predict_arrays(
    model: torch.nn.Module, meta: dict[str, Any], bg: np.ndarray, fgbg: np.ndarray,
    res: int, device: torch.device, norm: Norm | None = None,
) -> Prediction:
    """Run the model on one (bg, fgbg) pair of uint8 RGB arrays; outputs at fgbg's size.

    `norm`: `device_norm(meta["norm"], device)` made once for many pairs (else made here)."""
    from depthkit.model import to_outputs

    norm = norm if norm is not None else device_norm(meta["norm"], device)
    out = to_outputs(model(to_input(bg, res, norm["bg"], device),
                           to_input(fgbg, res, norm["fgbg"], device)))
    both = F.interpolate(torch.cat([out["mask"], out["depth"]], dim=1), size=fgbg.shape[:2],
                         mode="bilinear", align_corners=False)
    mask, depth = both[0].clamp(0, 1).cpu().numpy()  # the pair's one read to the host
    return Prediction(mask, depth)


def write_outputs(out: Path, name: str, bg: np.ndarray, fgbg: np.ndarray, pred: Prediction
                  ) -> list[Path]:
    """Write the four pictures of one pair (atomically); returns their paths."""
    paths = {
        "mask": out / f"{name}_mask.png",
        "depth": out / f"{name}_depth.png",
        "depth_color": out / f"{name}_depth_color.png",
        "side": out / f"{name}_side.png",
    }
    save_image_atomic(Image.fromarray(pred.mask.astype(np.uint8) * 255), paths["mask"])
    save_image_atomic(Image.fromarray(to_uint8(pred.depth)), paths["depth"])
    save_image_atomic(Image.fromarray(colorize_depth(pred.depth)), paths["depth_color"])
    save_image_atomic(side_by_side(bg, fgbg, pred.mask, pred.depth), paths["side"])
    return list(paths.values())


def output_names(pairs: list[tuple[Path, Path]]) -> list[str]:
    """Output stem per pair: the fgbg's stem (unique, else an error naming the clash)."""
    seen: dict[str, Path] = {}
    for _, f in pairs:
        if f.stem in seen:
            raise DepthkitError(f"two inputs would write the same outputs: {seen[f.stem]} and {f}")
        seen[f.stem] = f
    return list(seen)


@dataclass(frozen=True)
class PredictRun:
    """A checked, ready prediction job: pairs matched, model loaded, output folder made."""

    pairs: list[tuple[Path, Path]]
    names: list[str]
    model: torch.nn.Module
    meta: dict[str, Any]
    res: int
    device: torch.device
    out: Path
    norm: Norm  # the model's mean/std, on the device


def prepare_predict(cfg: PredictConfig) -> PredictRun:
    """Match the pairs, check the options and load the model (one-line errors, no work)."""
    from depthkit.model.checkpoint import load_model

    pairs = list_pairs(cfg.bg, cfg.fgbg)
    names = output_names(pairs)
    if cfg.res is not None:
        check_res(cfg.res)
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise DepthkitError(f"-o {out}: exists and is not a folder")
    device = pick_device(cfg.device)
    model, meta = load_model(cfg.checkpoint, device=str(device))
    res = check_res(cfg.res or int(meta["res"]))
    return PredictRun(pairs, names, model, meta, res, device, out,
                      device_norm(meta["norm"], device))


def run_predict(run: PredictRun) -> Iterator[tuple[Path, list[Path]]]:
    """Predict every pair, writing its outputs; yields (fgbg path, written paths)."""
    run.out.mkdir(parents=True, exist_ok=True)
    bg_cache: tuple[Path, np.ndarray] | None = None
    for (bg_path, fgbg_path), name in zip(run.pairs, run.names, strict=True):
        if bg_cache is None or bg_cache[0] != bg_path:
            bg_cache = (bg_path, read_rgb(bg_path))
        bg = bg_cache[1]
        fgbg = read_rgb(fgbg_path)
        check_same_scene(bg_path, bg, fgbg_path, fgbg)
        pred = predict_arrays(run.model, run.meta, bg, fgbg, run.res, run.device, run.norm)
        yield fgbg_path, write_outputs(run.out, name, bg, fgbg, pred)
