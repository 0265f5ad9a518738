"""DALI pipeline from a shard folder to torch batches: read, join backgrounds, decode, augment.

One code path for both backends: JPEG decoding runs on the GPU (`"mixed"`) when the loader's
device is CUDA and on the CPU (`device_id=None`) otherwise; every later op runs where its input
lives. Per sample::

    reader (fgbg, mask, depth, bgid) --bank lookup--> bg (decoded once per loader)
    decode -> [one affine warp per image, with one matrix per sample, only if it drew geometry]
           -> normalise (bg, fgbg), scale (depth); colour and grid parameters drawn here too
    torch: colour matrix on bg and fgbg of the samples that drew colour (depthkit.loader.photometric),
           grid distortion on the samples that drew it, all four images at once (depthkit.loader.gridwarp)

Epochs: each `iter()` builds a fresh pipeline seeded from (seed, epoch, rank), so an epoch's
order and augmentations depend only on those: `set_epoch` resumes exactly at an epoch boundary
(the same semantics as torch's DistributedSampler: call it before each epoch).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from nvidia.dali import fn, pipeline_def, types
from nvidia.dali.plugin.base_iterator import LastBatchPolicy
from nvidia.dali.plugin.pytorch import DALIGenericIterator

from depthkit.core.errors import DepthkitError
from depthkit.loader import augment as aug
from depthkit.loader import gridwarp
from depthkit.loader.augment import AugmentConfig
from depthkit.loader.backgrounds import BackgroundBank
from depthkit.loader.photometric import IDENTITY, apply_color
from depthkit.shard import schema
from depthkit.shard.manifest import background_file, load_manifest, split_files

log = logging.getLogger(__name__)

READER_NAME = "shards"
OUTPUTS = ("bg", "fgbg", "mask", "depth", "bgid", "color", "grid")
# Mean/std of the original dataset at 224 px (FACTS), used when a manifest has no stats.
DEFAULT_NORM = {
    "bg": {"mean": [0.498, 0.506, 0.486], "std": [0.279, 0.278, 0.319]},
    "fgbg": {"mean": [0.496, 0.502, 0.483], "std": [0.280, 0.278, 0.318]},
}


@dataclass(frozen=True)
class LoaderConfig:
    """What to load and how; see CONTRACTS.md (loader -> train / eval)."""

    shards: Path
    split: str = "train"  # "train" | "val"
    res: int = 224  # reads files[str(res)] of the manifest
    batch_size: int = 32
    augment: AugmentConfig | None = None  # None = no augmentation (validation)
    shuffle: bool = True
    seed: int = 0
    rank: int = 0  # global rank
    world_size: int = 1
    device: str = "cpu"  # "cuda[:n]" -> mixed decode on that GPU; "cpu" -> device_id=None
    num_threads: int = 2
    drop_last: bool = True  # True: full batches, same count on every rank; False: all samples once
    channels_last: bool = False  # bg/fgbg in torch.channels_last memory format
    bg_bank: bool = True  # False decodes each sample's background again (for benchmarks)
    prefetch: int = 2  # DALI prefetch queue depth
    shuffle_buffer: int = 1024  # reader shuffle buffer (shards are shuffled at write time too)


def shard_range(total: int, rank: int, world_size: int) -> tuple[int, int]:
    """[start, end) of the samples DALI's reader gives a rank (its own split rule)."""
    return total * rank // world_size, total * (rank + 1) // world_size


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """A DALI seed (31-bit) that depends only on (seed, epoch, rank)."""
    return int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1)[0] % (2**31 - 1))


def _device_id(device: str) -> int | None:
    """DALI device_id for a torch device string: None on the CPU (DALI 2.x, not -1)."""
    dev = torch.device(device)
    if dev.type == "cpu":
        return None
    if dev.type != "cuda":
        raise DepthkitError(f"--device must be cpu or cuda[:n], got {device!r}")
    if not torch.cuda.is_available():
        raise DepthkitError(f"device {device!r} requested but CUDA is not available")
    return dev.index if dev.index is not None else torch.cuda.current_device()


@dataclass(frozen=True)
class _Graph:
    """Everything the pipeline function needs (built once per loader)."""

    tars: list[str]
    indexes: list[str]
    res: int
    augment: AugmentConfig | None
    gpu: bool
    shuffle: bool
    shuffle_buffer: int
    rank: int
    world_size: int
    bank: BackgroundBank
    bg_bank: bool
    norm: dict[str, dict[str, list[float]]]


def _graph(g: _Graph) -> tuple[Any, ...]:
    """The per-sample DALI graph; returns the nodes named in OUTPUTS."""
    fgbg, mask, depth, bgid = fn.readers.webdataset(
        paths=g.tars,
        index_paths=g.indexes,
        ext=[schema.EXT_FGBG, schema.EXT_MASK, schema.EXT_DEPTH, schema.EXT_BGID],
        dtypes=[types.UINT8, types.UINT8, types.UINT8, types.INT32],
        missing_component_behavior="error",
        shard_id=g.rank,
        num_shards=g.world_size,
        random_shuffle=g.shuffle,
        initial_fill=g.shuffle_buffer,
        pad_last_batch=True,
        name=READER_NAME,
    )
    decoder = "mixed" if g.gpu else "cpu"
    shapes = [fn.peek_image_shape(x) for x in (fgbg, mask, depth)]
    if g.bg_bank:
        bg = fn.python_function(
            bgid, function=g.bank.lookup, batch_processing=True, output_layouts="HWC"
        )
        bg = bg.gpu() if g.gpu else bg
    else:
        bg = fn.decoders.image(
            fn.python_function(bgid, function=g.bank.lookup_encoded, batch_processing=True),
            device=decoder,
            output_type=types.RGB,
        )
    fgbg = fn.decoders.image(fgbg, device=decoder, output_type=types.RGB)
    mask = fn.decoders.image(mask, device=decoder, output_type=types.GRAY)
    depth = fn.decoders.image(depth, device=decoder, output_type=types.GRAY)

    resizes = [aug.dali_resize_matrix(s, g.res) for s in shapes]
    warp = resizes[0][1] | resizes[1][1] | resizes[2][1]
    smooth = warp  # needs interpolation (resize or shift-scale-rotate), not just a permutation
    geometry = fn.transforms.scale(scale=[1.0, 1.0])  # identity
    if g.augment is not None and g.augment.any_geometry:
        geometry, drawn, ssr = aug.dali_geometry(g.augment, g.res)
        warp = warp | drawn
        smooth = smooth | ssr
    if warp:
        # ONE geometry per sample: every image's matrix is (its resize to res) then `geometry`.
        m_fgbg, m_mask, m_depth = (fn.transforms.combine(r[0], geometry) for r in resizes)
        if smooth:
            bg = aug.dali_warp(bg, geometry, g.res)
            fgbg = aug.dali_warp(fgbg, m_fgbg, g.res)
            depth = aug.dali_warp(depth, m_depth, g.res)
        else:  # flip / rotate-90 only: pixel centres land on pixel centres
            bg = aug.dali_warp(bg, geometry, g.res, nearest=True)
            fgbg = aug.dali_warp(fgbg, m_fgbg, g.res, nearest=True)
            depth = aug.dali_warp(depth, m_depth, g.res, nearest=True)
        mask = aug.dali_warp(mask, m_mask, g.res, nearest=True)

    if g.augment is not None and g.augment.any_color:
        color = aug.dali_color(g.augment)
    else:
        color = fn.constant(fdata=list(IDENTITY), dtype=types.FLOAT)
    if g.augment is not None and g.augment.p_grid > 0:
        grid, distort = aug.dali_grid(g.augment)
        # CPU: distort uint8 HWC inside DALI (cheap); GPU: batched torch after the pipeline.
        if not g.gpu and distort:
            bg, fgbg, mask, depth = fn.python_function(
                bg, fgbg, mask, depth, grid, function=gridwarp.grid_distort_batch,
                num_outputs=4, batch_processing=True, output_layouts=["HWC"] * 4,
            )
    else:
        grid = fn.constant(fdata=[0.0, 0.0], shape=[2, 1], dtype=types.FLOAT)

    def normalize(x: Any, stats: dict[str, list[float]]) -> Any:
        return fn.crop_mirror_normalize(
            x,
            dtype=types.FLOAT,
            output_layout="CHW",
            mean=[255.0 * m for m in stats["mean"]],
            std=[255.0 * s for s in stats["std"]],
        )

    bg = normalize(bg, g.norm["bg"])
    fgbg = normalize(fgbg, g.norm["fgbg"])
    depth = fn.crop_mirror_normalize(depth, dtype=types.FLOAT, output_layout="CHW", std=[255.0])
    mask = fn.transpose(mask, perm=[2, 0, 1])  # (1, H, W) uint8, thresholded in torch
    return bg, fgbg, mask, depth, bgid, color, grid


class Loader:
    """Iterable of batches from a shard folder; one epoch per `iter()`; see LoaderConfig."""

    def __init__(self, cfg: LoaderConfig, graph: _Graph, sizes: list[int]):
        self.cfg = cfg
        self.epoch = 0
        self.norm = graph.norm
        self._graph = graph
        self._sizes = sizes  # samples per shard file, in manifest order
        self._device_id = _device_id(cfg.device)

    @property
    def num_samples(self) -> int:
        """Samples in the split (all ranks)."""
        return sum(self._sizes)

    def __len__(self) -> int:
        total, b = self.num_samples, self.cfg.batch_size
        if self.cfg.drop_last:
            return (total // self.cfg.world_size) // b  # the smallest rank's full batches
        start, end = shard_range(total, self.cfg.rank, self.cfg.world_size)
        return math.ceil((end - start) / b)

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order and augmentations the next `iter()` yields."""
        self.epoch = int(epoch)

    def _epoch_graph(self) -> _Graph:
        """The graph with this epoch's file order (the same on every rank)."""
        g = self._graph
        if not self.cfg.shuffle:
            return g
        order = np.random.default_rng([self.cfg.seed, self.epoch]).permutation(len(g.tars))
        return _Graph(**{
            **g.__dict__,
            "tars": [g.tars[i] for i in order],
            "indexes": [g.indexes[i] for i in order],
        })

    def build_pipeline(self) -> Any:
        """This epoch's DALI pipeline (built, not run)."""
        cfg = self.cfg
        pipe_fn = pipeline_def(_graph, enable_conditionals=True)
        pipe = pipe_fn(
            self._epoch_graph(),
            batch_size=cfg.batch_size,
            num_threads=cfg.num_threads,
            device_id=self._device_id,
            seed=epoch_seed(cfg.seed, self.epoch, cfg.rank),
            prefetch_queue_depth=cfg.prefetch,
        )
        pipe.build()
        return pipe

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        n = len(self)
        if n == 0:
            return
        pipe = self.build_pipeline()
        dali_iter = DALIGenericIterator(
            [pipe],
            list(OUTPUTS),
            reader_name=READER_NAME,
            last_batch_policy=LastBatchPolicy.PARTIAL,
            auto_reset=False,
        )
        try:
            for i, out in enumerate(dali_iter):
                if i >= n:
                    break
                yield self._finish(out[0])
        finally:
            del dali_iter, pipe

    def _finish(self, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Torch-side steps: mask threshold, grid distortion, dtypes, memory format."""
        batch = {
            "bg": out["bg"],
            "fgbg": out["fgbg"],
            "mask": (out["mask"] >= schema.MASK_THRESHOLD_U8).float(),
            "depth": out["depth"],
            "bgid": out["bgid"].reshape(-1).long(),
        }
        color = out["color"]
        recolor = (color.cpu() != torch.tensor(IDENTITY)).any(1)
        if bool(recolor.any()):
            idx = recolor.nonzero().reshape(-1).to(batch["bg"].device)
            for key in ("bg", "fgbg"):
                norm = self.norm[key]
                part = apply_color(batch[key].index_select(0, idx), color.cpu()[recolor.cpu()],
                                   norm["mean"], norm["std"])
                batch[key] = batch[key].index_copy(0, idx, part)
        grid = out["grid"]
        drew = grid.flatten(1).abs().sum(1) > 0
        if self._graph.gpu and bool(drew.any()):  # a host sync, once per batch
            batch = _apply_grid(batch, grid, drew)
        if self.cfg.channels_last:
            for key in ("bg", "fgbg"):
                batch[key] = batch[key].contiguous(memory_format=torch.channels_last)
        return batch


def _apply_grid(batch: dict[str, torch.Tensor], grid: torch.Tensor, drew: torch.Tensor) -> dict:
    """Grid-distort the samples that drew it, all 8 channels in one pass."""
    idx = drew.nonzero().reshape(-1).to(batch["bg"].device)
    keys = ("bg", "fgbg", "mask", "depth")
    stacked = torch.cat([batch[k].index_select(0, idx) for k in keys], dim=1)
    warped = gridwarp.grid_distort(stacked, grid.index_select(0, idx.to(grid.device)))
    parts = torch.split(warped, [batch[k].shape[1] for k in keys], dim=1)
    out = dict(batch)
    for key, part in zip(keys, parts, strict=True):
        if key == "mask":
            part = (part >= 0.5).float()
        out[key] = batch[key].index_copy(0, idx, part)
    return out


def build_loader(cfg: LoaderConfig) -> Loader:
    """A Loader for one split and resolution of a shard folder; DepthkitError on bad input."""
    if cfg.split not in schema.SPLITS:
        raise DepthkitError(f"split must be one of {', '.join(schema.SPLITS)}, got {cfg.split!r}")
    if cfg.batch_size < 1 or cfg.world_size < 1 or not 0 <= cfg.rank < cfg.world_size:
        raise DepthkitError(
            f"bad batch/rank settings: batch_size={cfg.batch_size}, "
            f"rank={cfg.rank}, world_size={cfg.world_size}"
        )
    root = Path(cfg.shards)
    manifest = load_manifest(root)
    entries = split_files(manifest, cfg.res, cfg.split)
    entries = [e for e in entries if int(e.get("samples", 1)) > 0]
    if not entries:
        raise DepthkitError(f"shards hold no {cfg.split} samples at {cfg.res} px in {root}")
    tars, indexes = [], []
    for e in entries:
        for key, bucket in (("tar", tars), ("index", indexes)):
            path = root / e[key]
            if not path.is_file():
                raise DepthkitError(f"missing shard file {path} (listed in the manifest)")
            bucket.append(str(path))
    bank = BackgroundBank.from_tar(root / background_file(manifest, cfg.res)["tar"], cfg.res)
    missing = sorted(set(int(b) for b in manifest.get("backgrounds", [])) - set(bank.ids()))
    if missing:
        raise DepthkitError(f"backgrounds {missing[:5]} listed in the manifest are not in the bank")
    stats = manifest.get("stats") or {}
    norm = {k: {"mean": list(stats.get(k, DEFAULT_NORM[k])["mean"]),
                "std": list(stats.get(k, DEFAULT_NORM[k])["std"])} for k in ("bg", "fgbg")}
    graph = _Graph(
        tars=tars,
        indexes=indexes,
        res=int(cfg.res),
        augment=cfg.augment,
        gpu=_device_id(cfg.device) is not None,
        shuffle=cfg.shuffle,
        shuffle_buffer=cfg.shuffle_buffer,
        rank=cfg.rank,
        world_size=cfg.world_size,
        bank=bank,
        bg_bank=cfg.bg_bank,
        norm=norm,
    )
    log.info("loader: %d %s samples in %d shards at %d px, rank %d/%d, device %s",
             sum(int(e["samples"]) for e in entries), cfg.split, len(tars), cfg.res,
             cfg.rank, cfg.world_size, cfg.device)
    return Loader(cfg, graph, [int(e["samples"]) for e in entries])
