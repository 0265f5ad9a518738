"""Generalisation check: mask IoU of a checkpoint on composites built from real photos.

The synthetic training data has its own look; users bring real photos. This tool pastes
cut-outs on real backgrounds and measures whether the model still finds the foreground by
comparing fgbg with bg:

- backgrounds: random square crops of real photos (flipped at random);
- cut-outs: the texture of a crop of ANOTHER real photo, shaped by a mask that is either a real
  silhouette (scikit-image's horse, its logo) or a synthetic one (smooth random blob, polygon),
  pasted at a random place and size with a hard 0/1 alpha or a soft (feathered, anti-aliased)
  one (`--paste hard|soft|mixed`; the true mask is alpha >= 0.5 either way);
- composite and background are JPEG-encoded at quality 95 like the original dataset's.

The photos come from any folder (`--images`); by default the sample images that ship inside
scikit-image (`skimage/data`: astronaut, cat, coffee, rocket, motorcycles, ...), which a dev
machine can get offline-friendly with `pip download scikit-image --no-deps` + unzip, or
`pip install scikit-image`. Nothing is downloaded at run time.

    python tools/realcheck.py --checkpoint demo-out/run/last.pt --images /path/to/skimage/data

Prints mask IoU (dataset-level and per image), Dice and accuracy, overall and per cut-out kind,
and writes a picture grid (`--grid`).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter

from depthkit.core.dist import pick_device
from depthkit.core.errors import DepthkitError
from depthkit.core.images import colorize_depth, jpeg_roundtrip, make_grid, save_image_atomic
from depthkit.core.report import emit_report
from depthkit.eval.metrics import MetricAccumulator
from depthkit.eval.predict import PREDICT_IMAGE_EXTS as IMAGE_EXTS
from depthkit.eval.predict import check_res, predict_arrays

# Gray/scientific pictures that do not look like scenes (documents, charts, microscopy masks).
SKIP = {"chessboard_GRAY", "chessboard_RGB", "page", "text", "phantom", "microaneurysms",
        "horse", "logo", "multipage", "multipage_rgb", "cell", "clock_motion"}
SILHOUETTES = ("horse", "logo")  # real shapes: dark horse on white; logo on white


@dataclass(frozen=True)
class Composite:
    bg: np.ndarray  # (S, S, 3) uint8, as decoded after JPEG
    fgbg: np.ndarray
    mask: np.ndarray  # (S, S) bool
    kind: str  # silhouette name, "blob" or "polygon"
    paste: str  # "hard" or "soft"
    bg_name: str
    fg_name: str


def default_images() -> Path | None:
    """scikit-image's shipped sample photos, when it is importable."""
    try:
        import skimage  # type: ignore[import-not-found]
    except ImportError:
        return None
    return Path(skimage.__file__).parent / "data"


def load_photos(folder: Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(photos by name as RGB uint8, silhouettes by name as bool masks) from a folder."""
    photos, shapes = {}, {}
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() not in IMAGE_EXTS:
            continue
        try:
            with Image.open(p) as im:
                rgb = np.asarray(im.convert("RGB"))
        except (OSError, ValueError) as err:  # a format Pillow cannot read (multi-page TIFF)
            print(f"realcheck: skipped {p.name}: {err}", file=sys.stderr)
            continue
        if p.stem in SILHOUETTES:
            shapes[p.stem] = rgb.mean(axis=2) < 200  # the dark/coloured part on white
        elif p.stem not in SKIP and min(rgb.shape[:2]) >= 128:
            photos[p.stem] = rgb
    return photos, shapes


def random_crop(img: np.ndarray, rng: np.random.Generator, size: int, min_frac: float = 0.4
                ) -> np.ndarray:
    """A random square crop (side >= min_frac of the short side) resized to size x size."""
    h, w = img.shape[:2]
    side = int(rng.uniform(min_frac, 1.0) * min(h, w))
    y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
    crop = Image.fromarray(img[y:y + side, x:x + side]).resize((size, size), Image.BILINEAR)
    out = np.asarray(crop)
    return out[:, ::-1] if rng.random() < 0.5 else out


def blob_mask(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth random blob: low-pass noise thresholded, inside an ellipse envelope."""
    noise = Image.fromarray((rng.random((size, size)) * 255).astype(np.uint8))
    smooth = np.asarray(noise.filter(ImageFilter.GaussianBlur(size / 10)), dtype=np.float32)
    yy, xx = np.mgrid[:size, :size]
    r = np.hypot((yy - size / 2) / (size / 2), (xx - size / 2) / (size / 2))
    field = (smooth - smooth.mean()) / (smooth.std() + 1e-6) - 2.5 * r**2
    return field > -0.8


def polygon_mask(rng: np.random.Generator, size: int) -> np.ndarray:
    """A random star-shaped polygon of 5-12 vertices."""
    n = int(rng.integers(5, 13))
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    radii = rng.uniform(0.45, 1.0, n) * size / 2
    pts = [(size / 2 + r * np.cos(a), size / 2 + r * np.sin(a)) for a, r in zip(angles, radii,
                                                                               strict=True)]
    img = Image.new("L", (size, size), 0)
    ImageDraw.Draw(img).polygon(pts, fill=255)
    return np.asarray(img) > 0


def shape_mask(rng: np.random.Generator, shapes: dict[str, np.ndarray], size: int
               ) -> tuple[np.ndarray, str]:
    """A cut-out mask of about size x size: a real silhouette, a blob or a polygon."""
    kinds = [*shapes, "blob", "polygon"]
    kind = kinds[int(rng.integers(len(kinds)))]
    if kind == "blob":
        return blob_mask(rng, size), kind
    if kind == "polygon":
        return polygon_mask(rng, size), kind
    m = shapes[kind]
    ys, xs = np.nonzero(m)
    m = m[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    h, w = m.shape
    scale = size / max(h, w)
    im = Image.fromarray(m.astype(np.uint8) * 255).resize(
        (max(1, int(w * scale)), max(1, int(h * scale))), Image.BILINEAR)
    out = np.asarray(im) >= 128
    return (out[:, ::-1] if rng.random() < 0.5 else out), kind


def soft_alpha(shape: np.ndarray, radius: float = 0.8) -> np.ndarray:
    """A feathered alpha (float in [0, 1]) from a hard shape: a small Gaussian blur."""
    img = Image.fromarray(np.pad(shape, 3).astype(np.uint8) * 255)
    blurred = np.asarray(img.filter(ImageFilter.GaussianBlur(radius)), dtype=np.float32) / 255
    return blurred[3:-3, 3:-3]


def make_composite(rng: np.random.Generator, photos: dict[str, np.ndarray],
                   shapes: dict[str, np.ndarray], size: int, paste: str = "mixed"
                   ) -> Composite:
    """One (bg, fgbg, mask) from real photos (bg and cut-out texture from different photos)."""
    names = sorted(photos)
    bg_name, fg_name = (names[i] for i in rng.choice(len(names), 2, replace=False))
    bg = random_crop(photos[bg_name], rng, size)
    fg_side = int(rng.uniform(0.25, 0.6) * size)
    shape, kind = shape_mask(rng, shapes, fg_side)
    h, w = shape.shape
    texture = random_crop(photos[fg_name], rng, max(h, w))[:h, :w]
    y, x = int(rng.integers(0, size - h + 1)), int(rng.integers(0, size - w + 1))
    kind_of_paste = paste if paste != "mixed" else ("soft" if rng.random() < 0.5 else "hard")
    alpha = soft_alpha(shape) if kind_of_paste == "soft" else shape.astype(np.float32)
    mask = np.zeros((size, size), dtype=bool)
    mask[y:y + h, x:x + w] = alpha >= 0.5
    fgbg = bg.copy()
    window = fgbg[y:y + h, x:x + w].astype(np.float32)
    a = alpha[..., None]
    fgbg[y:y + h, x:x + w] = np.clip(window * (1 - a) + texture * a + 0.5, 0, 255).astype(
        np.uint8)
    return Composite(jpeg_roundtrip(bg), jpeg_roundtrip(fgbg), mask, kind, kind_of_paste,
                     bg_name, fg_name)


def run(args: argparse.Namespace) -> dict[str, object]:
    from depthkit.model.checkpoint import load_model

    folder = args.images or default_images()
    if folder is None or not Path(folder).is_dir():
        raise DepthkitError("no photo folder: pass --images DIR (e.g. scikit-image's skimage/data)")
    photos, shapes = load_photos(Path(folder))
    if len(photos) < 2:
        raise DepthkitError(f"--images {folder}: need at least 2 photos, found {len(photos)}")
    device = pick_device(args.device)
    model, meta = load_model(args.checkpoint, device=str(device))
    res = check_res(args.res or int(meta["res"]))
    rng = np.random.default_rng(args.seed)
    overall = MetricAccumulator()
    by_kind: dict[str, MetricAccumulator] = {}
    by_paste: dict[str, MetricAccumulator] = {}
    rows = []
    for _ in range(args.n):
        c = make_composite(rng, photos, shapes, args.size, args.paste)
        pred = predict_arrays(model, meta, c.bg, c.fgbg, res, device)
        prob = torch.from_numpy(pred.mask_prob)[None, None]
        true = torch.from_numpy(c.mask.astype(np.float32))[None, None]
        depth = torch.from_numpy(pred.depth)[None, None]  # no true depth: depth figures unused
        for acc in (overall, by_kind.setdefault(c.kind, MetricAccumulator()),
                    by_paste.setdefault(c.paste, MetricAccumulator())):
            acc.update(prob, true, depth, depth)
        if len(rows) < args.grid_rows:
            err = np.repeat((c.fgbg.mean(axis=2, keepdims=True) * 0.4).astype(np.uint8), 3, 2)
            err[pred.mask & ~c.mask] = (255, 40, 40)
            err[~pred.mask & c.mask] = (0, 220, 255)
            rows.append([c.bg, c.fgbg, c.mask.astype(np.uint8) * 255,
                         (pred.mask_prob * 255).astype(np.uint8), colorize_depth(pred.depth), err])

    def mask_figures(acc: MetricAccumulator) -> dict[str, float]:
        m = acc.compute()
        return {k: m[k] for k in ("mask_iou", "mask_iou_per_image", "mask_dice", "mask_acc",
                                  "samples")}

    report = {
        "checkpoint": str(args.checkpoint), "images": str(folder), "photos": len(photos),
        "silhouettes": sorted(shapes), "size": args.size, "model_res": res, "seed": args.seed,
        **mask_figures(overall),
        "paste": args.paste,
        "by_kind": {k: mask_figures(v) for k, v in sorted(by_kind.items())},
        "by_paste": {k: mask_figures(v) for k, v in sorted(by_paste.items())},
    }
    if args.grid:
        save_image_atomic(make_grid(rows, ("bg", "fgbg", "true mask", "pred mask",
                                           "pred depth", "mask error"), cell=128), args.grid)
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--images", type=Path, default=None, help="folder of real photos")
    p.add_argument("--n", type=int, default=300, help="composites to build")
    p.add_argument("--size", type=int, default=224, help="composite side in pixels")
    p.add_argument("--res", type=int, default=None, help="model resolution (default: ckpt's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--paste", choices=("hard", "soft", "mixed"), default="mixed",
                   help="cut-out edges: hard 0/1 alpha, soft (feathered) alpha, or half each")
    p.add_argument("--device", default="auto")
    p.add_argument("--grid", type=Path, default=None, help="write a picture grid (PNG)")
    p.add_argument("--grid-rows", type=int, default=8)
    p.add_argument("--json", type=Path, default=None, help="write the figures as JSON")
    return emit_report(run, p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
