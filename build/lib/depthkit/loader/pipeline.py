"""The shard loader: DALI pipelines (depthkit.loader.graph) iterated into torch batches.

One code path for both backends: JPEG decoding runs on the GPU (`"mixed"`) when the loader's
device is CUDA and on the CPU (`device_id=None`) otherwise; every later op runs where its input
lives. After DALI, in torch: the colour matrix on bg and fgbg of the samples that drew colour
(depthkit.loader.photometric) and, on the GPU, the grid distortion of the samples that drew it,
all four images at once (depthkit.loader.gridwarp).

Epochs: each `iter()` builds a fresh pipeline seeded from (seed, epoch, rank), so an epoch's
order and augmentations depend only on those: `set_epoch` resumes exactly at an epoch boundary
(the same semantics as torch's DistributedSampler: call it before each epoch).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from nvidia.dali import pipeline_def
from nvidia.dali.plugin.base_iterator import LastBatchPolicy
from nvidia.dali.plugin.pytorch import DALIGenericIterator

from depthkit.core.errors import DepthkitError
from depthkit.loader import gridwarp
from depthkit.loader.backgrounds import BackgroundBank
from depthkit.loader.config import DEFAULT_NORM, LoaderConfig, device_id, epoch_seed, shard_range
from depthkit.loader.graph import BGID, OUTPUTS, READER_NAME, GraphSpec, define
from depthkit.loader.photometric import IDENTITY, apply_color
from depthkit.shard import schema
from depthkit.shard.manifest import background_file, load_manifest, split_files
from depthkit.shard.preflight import check_split_files, find_bad_sample

log = logging.getLogger(__name__)

IMAGES = (schema.BACKGROUND, *schema.IMAGE_FIELDS)  # the image fields of a batch, in order
NORMALISED = tuple(f.name for f in IMAGES if f.scale == "stats")  # bg, fgbg


class Loader:
    """Iterable of batches from a shard folder; one epoch per `iter()`; see LoaderConfig."""

    def __init__(self, cfg: LoaderConfig, graph: GraphSpec, sizes: list[int]) -> None:
        self.cfg = cfg
        self.epoch = 0
        self.norm = graph.norm
        self._graph = graph
        self._sizes = sizes  # samples per shard file, in manifest order
        self._device_id = device_id(cfg.device)

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

    def _epoch_graph(self) -> GraphSpec:
        """The graph with this epoch's file order (the same on every rank)."""
        g = self._graph
        if not self.cfg.shuffle:
            return g
        order = np.random.default_rng([self.cfg.seed, self.epoch]).permutation(len(g.tars))
        return replace(g, tars=[g.tars[i] for i in order], indexes=[g.indexes[i] for i in order])

    def build_pipeline(self) -> Any:
        """This epoch's DALI pipeline (built, not run)."""
        cfg = self.cfg
        pipe_fn = pipeline_def(define, enable_conditionals=True)
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
        pipe = dali_iter = None
        done = 0  # batches handed out: bounds where a failure's culprit can lie
        try:
            pipe = self.build_pipeline()
            dali_iter = DALIGenericIterator(
                [pipe],
                list(OUTPUTS),
                reader_name=READER_NAME,
                last_batch_policy=LastBatchPolicy.PARTIAL,
                auto_reset=False,
            )
            for out in dali_iter:
                if done >= n:
                    break
                yield self._finish(out[0])
                done += 1
        except RuntimeError as err:
            mapped = self._data_error(str(err), done)
            if mapped is None:
                raise
            raise mapped from None
        finally:
            del dali_iter, pipe

    def _data_error(self, text: str, done: int) -> DepthkitError | None:
        """The one-line error for a DALI failure on the shard data, naming the damaged file
        and sample where the members this rank had read show one; None when the failure is
        not about the data (the original error then propagates)."""
        op = _DALI_OP.search(text)
        if op is None or op.group(1) not in _DATA_OPS or (
                op.group(1) == "python_function" and "background id" not in text):
            return None
        cfg, g = self.cfg, self._epoch_graph()
        root = Path(cfg.shards)
        start, end = shard_range(self.num_samples, cfg.rank, cfg.world_size)
        read = cfg.shuffle_buffer + (done + cfg.prefetch + 4) * cfg.batch_size  # an upper bound
        try:  # the files may have changed since the pre-flight
            check_split_files(root, load_manifest(root), cfg.res, cfg.split)
            found = find_bad_sample(root, list(zip(g.tars, g.indexes, strict=True)),
                                    (start, min(end, start + read)), frozenset(g.bank.ids()))
        except DepthkitError as err:
            found = err
        return found or DepthkitError(
            f"the loader failed reading the {cfg.split} shards of {root} at {cfg.res} px "
            f"({_dali_reason(text)}); run `depthkit verify {root}` to find the damaged file")

    def _finish(self, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Torch-side steps: mask threshold, colour, grid distortion, dtypes, memory format."""
        batch = {f.name: _threshold(out[f.name]) if f.scale == "binary" else out[f.name]
                 for f in IMAGES}
        batch[BGID.name] = out[BGID.name].reshape(-1).long()
        batch = self._recolor(batch, out["color"])
        grid = out["grid"]
        drew = grid.flatten(1).abs().sum(1) > 0
        if self._graph.gpu and bool(drew.any()):  # a host sync, once per batch
            batch = _apply_grid(batch, grid, drew)
        if self.cfg.channels_last:
            for key in NORMALISED:
                batch[key] = batch[key].contiguous(memory_format=torch.channels_last)
        return batch

    def _recolor(self, batch: dict[str, torch.Tensor], color: torch.Tensor) -> dict:
        """The colour matrix on bg and fgbg of the samples whose draw is not IDENTITY."""
        recolor = (color.cpu() != torch.tensor(IDENTITY)).any(1)
        if bool(recolor.any()):
            idx = recolor.nonzero().reshape(-1).to(batch["bg"].device)
            for key in NORMALISED:
                norm = self.norm[key]
                part = apply_color(batch[key].index_select(0, idx), color.cpu()[recolor.cpu()],
                                   norm["mean"], norm["std"])
                batch[key] = batch[key].index_copy(0, idx, part)
        return batch


_DALI_OP = re.compile(r"Error in \w+ operator `nvidia\.dali\.fn\.([\w.]+)`")
_DATA_OPS = ("readers.webdataset", "peek_image_shape", "decoders.image", "python_function")


def _dali_reason(text: str) -> str:
    """The line of a DALI error that says what went wrong (after "encountered:")."""
    lines = [ln.strip() for ln in text.split("encountered:", 1)[-1].splitlines() if ln.strip()]
    return re.sub(r'^Assert on ".*?" failed: ', "", lines[0] if lines else "DALI error")


def _threshold(mask: torch.Tensor) -> torch.Tensor:
    """A uint8 mask as float 0/1 (foreground at >= MASK_THRESHOLD_U8)."""
    return (mask >= schema.MASK_THRESHOLD_U8).float()


def _apply_grid(batch: dict[str, torch.Tensor], grid: torch.Tensor, drew: torch.Tensor) -> dict:
    """Grid-distort the samples that drew it, all 8 channels in one pass."""
    idx = drew.nonzero().reshape(-1).to(batch["bg"].device)
    stacked = torch.cat([batch[f.name].index_select(0, idx) for f in IMAGES], dim=1)
    warped = gridwarp.grid_distort(stacked, grid.index_select(0, idx.to(grid.device)))
    parts = torch.split(warped, [batch[f.name].shape[1] for f in IMAGES], dim=1)
    out = dict(batch)
    for f, part in zip(IMAGES, parts, strict=True):
        if f.scale == "binary":
            part = (part >= schema.MASK_THRESHOLD).float()
        out[f.name] = batch[f.name].index_copy(0, idx, part)
    return out


def _check_config(cfg: LoaderConfig) -> None:
    """DepthkitError on a split or batch/rank setting the loader cannot serve."""
    if cfg.split not in schema.SPLITS:
        raise DepthkitError(f"split must be one of {', '.join(schema.SPLITS)}, got {cfg.split!r}")
    if cfg.batch_size < 1 or cfg.world_size < 1 or not 0 <= cfg.rank < cfg.world_size:
        raise DepthkitError(
            f"bad batch/rank settings: batch_size={cfg.batch_size}, "
            f"rank={cfg.rank}, world_size={cfg.world_size}"
        )


def _shard_files(root: Path, entries: list[dict]) -> tuple[list[str], list[str]]:
    """(tar paths, index paths) of the manifest entries; DepthkitError on a missing file."""
    tars, indexes = [], []
    for e in entries:
        for key, bucket in (("tar", tars), ("index", indexes)):
            path = root / e[key]
            if not path.is_file():
                raise DepthkitError(f"missing shard file {path} (listed in the manifest)")
            bucket.append(str(path))
    return tars, indexes


def _load_bank(root: Path, manifest: dict, res: int) -> BackgroundBank:
    """The decoded backgrounds of one resolution; DepthkitError if the manifest lists more."""
    bank = BackgroundBank.from_tar(root / background_file(manifest, res)["tar"], res)
    missing = sorted(set(int(b) for b in manifest.get("backgrounds", [])) - set(bank.ids()))
    if missing:
        raise DepthkitError(f"backgrounds {missing[:5]} listed in the manifest are not in the bank")
    return bank


def _norm(manifest: dict) -> dict[str, dict[str, list[float]]]:
    """Mean/std of bg and fgbg: the manifest's stats, else DEFAULT_NORM."""
    stats = manifest.get("stats") or {}
    return {k: {"mean": list(stats.get(k, DEFAULT_NORM[k])["mean"]),
                "std": list(stats.get(k, DEFAULT_NORM[k])["std"])} for k in NORMALISED}


def build_loader(cfg: LoaderConfig) -> Loader:
    """A Loader for one split and resolution of a shard folder; DepthkitError on bad input."""
    _check_config(cfg)
    root = Path(cfg.shards)
    manifest = load_manifest(root)
    entries = split_files(manifest, cfg.res, cfg.split)
    entries = [e for e in entries if int(e.get("samples", 1)) > 0]
    if not entries:
        raise DepthkitError(f"shards hold no {cfg.split} samples at {cfg.res} px in {root}")
    check_split_files(root, manifest, cfg.res, cfg.split)  # cheap: no image is read
    tars, indexes = _shard_files(root, entries)
    bank = _load_bank(root, manifest, cfg.res)
    graph = GraphSpec(
        tars=tars,
        indexes=indexes,
        res=int(cfg.res),
        augment=cfg.augment,
        gpu=device_id(cfg.device) is not None,
        shuffle=cfg.shuffle,
        shuffle_buffer=cfg.shuffle_buffer,
        rank=cfg.rank,
        world_size=cfg.world_size,
        bank=bank,
        bg_bank=cfg.bg_bank,
        mmap=cfg.mmap,
        norm=_norm(manifest),
    )
    log.info("loader: %d %s samples in %d shards at %d px, rank %d/%d, device %s",
             sum(int(e["samples"]) for e in entries), cfg.split, len(tars), cfg.res,
             cfg.rank, cfg.world_size, cfg.device)
    return Loader(cfg, graph, [int(e["samples"]) for e in entries])
