"""A DALI-free shard loader for eval: the tars read with webdataset, JPEGs decoded by Pillow.

It yields the DALI loader's batch dict (bg, fgbg normalised by the manifest's stats; mask 0/1
at MASK_THRESHOLD_U8; depth /255; bgid), backgrounds joined by id from backgrounds.tar, in
shard order and without augmentation: what `depthkit eval` needs where DALI has no wheel
(macOS, Windows, Linux on ARM). Training needs DALI.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from depthkit.core.errors import DepthkitError
from depthkit.core.normalization import normalize_images
from depthkit.loader.backgrounds import BackgroundBank
from depthkit.loader.config import DEFAULT_NORM, LoaderConfig, shard_range
from depthkit.shard import schema
from depthkit.shard.manifest import background_file, load_manifest, split_files
from depthkit.shard.preflight import check_split_files

NORMALISED = ("bg", "fgbg")
DALI_MISSING = "NVIDIA DALI (Linux x86_64 only: pip install nvidia-dali-cuda120)"


def dali_available() -> bool:
    """Whether `import nvidia.dali` works (the DALI loader and training need it)."""
    try:
        import nvidia.dali  # noqa: F401
    except ImportError:
        return False
    return True


def _decode(data: bytes, field: schema.Field, res: int, where: str) -> np.ndarray:
    """One JPEG component -> uint8 (res, res, C), resized like the DALI loader if needed."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            im = im.convert(field.mode)
            if im.size != (res, res):
                im = im.resize((res, res), Image.NEAREST if field.scale == "binary"
                               else Image.BILINEAR)
            arr = np.asarray(im)
    except OSError as err:
        raise DepthkitError(f"corrupt {field.ext} of {where}: {err}") from None
    return arr[..., None] if arr.ndim == 2 else arr


class WdsLoader:
    """Iterable of eval batches from a shard folder (one pass per `iter()`); see LoaderConfig."""

    def __init__(self, cfg: LoaderConfig, tars: list[str], sizes: list[int],
                 bank: BackgroundBank, norm: dict[str, dict[str, list[float]]]) -> None:
        self.cfg = cfg
        self.epoch = 0
        self.norm = norm
        self._tars = tars
        self._sizes = sizes
        self._bank = bank

    @property
    def num_samples(self) -> int:
        """Samples in the split (all ranks)."""
        return sum(self._sizes)

    def __len__(self) -> int:
        start, end = shard_range(self.num_samples, self.cfg.rank, self.cfg.world_size)
        n, b = end - start, self.cfg.batch_size
        return n // b if self.cfg.drop_last else math.ceil(n / b)

    def set_epoch(self, epoch: int) -> None:
        """Kept for the loader interface: without shuffling every epoch is the same."""
        self.epoch = int(epoch)

    def _samples(self) -> Iterator[dict[str, np.ndarray | int]]:
        """This rank's samples, decoded (uint8 HWC images and the bgid), in shard order."""
        import webdataset as wds

        cfg, res = self.cfg, self.cfg.res
        start, end = shard_range(self.num_samples, cfg.rank, cfg.world_size)
        data = wds.WebDataset(self._tars, shardshuffle=False, empty_check=False)
        for i, sample in enumerate(data):
            if i >= end:
                return
            if i < start:
                continue
            where = f"sample {sample['__key__']} in {sample.get('__url__', cfg.shards)}"
            missing = [e for e in schema.REQUIRED_EXTS if e not in sample]
            if missing:
                raise DepthkitError(f"{where} has no {', '.join(missing)}")
            out: dict[str, np.ndarray | int] = {
                f.name: _decode(sample[f.ext], f, res, where) for f in schema.IMAGE_FIELDS}
            bgid = schema.decode_bgid(sample[schema.EXT_BGID])
            if bgid not in self._bank.images:
                raise DepthkitError(f"{where}: background id {bgid} is not in the background set")
            out["bg"] = self._bank.images[bgid]
            out["bgid"] = bgid
            yield out

    def _batch(self, samples: list[dict[str, np.ndarray | int]]) -> dict[str, torch.Tensor]:
        """Stack decoded samples into the DALI loader's batch dict, on the loader's device."""
        def stack(name: str) -> torch.Tensor:
            arr = np.stack([s[name] for s in samples])  # (B, H, W, C) uint8
            return torch.from_numpy(arr).permute(0, 3, 1, 2).to(self.cfg.device)

        batch = {k: normalize_images(stack(k), self.norm[k]["mean"], self.norm[k]["std"])
                 for k in NORMALISED}
        batch["mask"] = (stack("mask") >= schema.MASK_THRESHOLD_U8).float()
        batch["depth"] = stack("depth").float() / 255.0
        batch["bgid"] = torch.tensor([int(s["bgid"]) for s in samples], dtype=torch.long,
                                     device=self.cfg.device)
        if self.cfg.channels_last:
            for key in NORMALISED:
                batch[key] = batch[key].contiguous(memory_format=torch.channels_last)
        return batch

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        pending: list[dict[str, np.ndarray | int]] = []
        for sample in self._samples():
            pending.append(sample)
            if len(pending) == self.cfg.batch_size:
                yield self._batch(pending)
                pending = []
        if pending and not self.cfg.drop_last:
            yield self._batch(pending)


def _norm(manifest: dict) -> dict[str, dict[str, list[float]]]:
    """Mean/std of bg and fgbg: the manifest's stats, else DEFAULT_NORM (as the DALI loader)."""
    stats = manifest.get("stats") or {}
    return {k: {"mean": list(stats.get(k, DEFAULT_NORM[k])["mean"]),
                "std": list(stats.get(k, DEFAULT_NORM[k])["std"])} for k in NORMALISED}


def build_wds_loader(cfg: LoaderConfig) -> WdsLoader:
    """A WdsLoader for one split and resolution (no augmentation); DepthkitError on bad input."""
    if cfg.augment is not None:
        raise DepthkitError(f"augmentation needs {DALI_MISSING}")
    if cfg.split not in schema.SPLITS:
        raise DepthkitError(f"split must be one of {', '.join(schema.SPLITS)}, got {cfg.split!r}")
    if cfg.batch_size < 1 or cfg.world_size < 1 or not 0 <= cfg.rank < cfg.world_size:
        raise DepthkitError(f"bad batch/rank settings: batch_size={cfg.batch_size}, "
                            f"rank={cfg.rank}, world_size={cfg.world_size}")
    root = Path(cfg.shards)
    manifest = load_manifest(root)
    entries = [e for e in split_files(manifest, cfg.res, cfg.split) if int(e.get("samples", 1))]
    if not entries:
        raise DepthkitError(f"shards hold no {cfg.split} samples at {cfg.res} px in {root}")
    check_split_files(root, manifest, cfg.res, cfg.split)
    tars = [str(root / e["tar"]) for e in entries]
    for tar in tars:
        if not Path(tar).is_file():
            raise DepthkitError(f"missing shard file {tar} (listed in the manifest)")
    bank = BackgroundBank.from_tar(root / background_file(manifest, cfg.res)["tar"], cfg.res)
    return WdsLoader(cfg, tars, [int(e["samples"]) for e in entries], bank, _norm(manifest))
