"""Per-channel mean/std of a shard folder's images, for the manifest (what loaders normalise by).

Computed from exact integer histograms (Pillow's, in C), so reruns give identical figures.
"""

from __future__ import annotations

import io
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from depthkit.shard import schema
from depthkit.shard.tario import iter_tar


def image_histograms(items: list[tuple[str, bytes, str]]) -> dict[str, np.ndarray]:
    """Per-channel value histograms (exact integer counts, (channels, 256)) of encoded
    images (name, bytes, mode), summed per name. Runs in worker processes."""
    acc: dict[str, np.ndarray] = {}
    for name, data, mode in items:
        with Image.open(io.BytesIO(data)) as im:
            counts = (im if im.mode == mode else im.convert(mode)).histogram()
        hist = np.asarray(counts, dtype=np.int64).reshape(len(mode), 256)
        acc[name] = acc[name] + hist if name in acc else hist
    return acc


def channel_stats(bg_tar: Path, train_tars: list[Path], max_samples: int,
                  pool: ProcessPoolExecutor | None = None
                  ) -> tuple[dict[str, dict[str, list[float]]], int]:
    """Per-channel mean/std on [0, 1] of all backgrounds and the first `max_samples` training
    samples in shard order (a random subset, as shards are shuffled); exact integer counts,
    so reruns give identical figures. Returns (stats, samples used)."""
    bg = schema.BACKGROUND
    items = [(bg.name, data, str(bg.mode)) for name, data in iter_tar(bg_tar)
             if name.endswith("." + bg.ext)]
    keys: set[str] = set()
    images = {f.ext: f for f in schema.IMAGE_FIELDS}
    for tar in train_tars:
        for name, data in iter_tar(tar):
            key, _, ext = name.partition(".")
            if ext not in images:
                continue
            if key not in keys:
                if len(keys) >= max_samples:
                    break
                keys.add(key)
            items.append((images[ext].name, data, str(images[ext].mode)))
        if len(keys) >= max_samples:
            break
    chunks = [items[i:i + 64] for i in range(0, len(items), 64)]
    acc: dict[str, np.ndarray] = {}
    for part in (pool.map(image_histograms, chunks) if pool is not None
                 else map(image_histograms, chunks)):
        for name, hist in part.items():
            acc[name] = acc[name] + hist if name in acc else hist
    stats = {}
    for name in (f.name for f in (schema.BACKGROUND, *schema.IMAGE_FIELDS)):
        if name not in acc:
            continue
        hist = acc[name]  # (channels, 256) counts
        values = np.arange(256, dtype=np.float64) / 255.0
        n = hist.sum(1)
        mean = hist @ values / n
        var = np.maximum(hist @ values**2 / n - mean**2, 0.0)
        stats[name] = {"mean": [round(float(x), 6) for x in mean],
                       "std": [round(float(x), 6) for x in np.sqrt(var)]}
    return stats, len(keys)
