"""The shard loader: a DALI pipeline (depthkit.loader.graph) iterated into torch batches.

One code path for both backends: JPEG decoding runs on the GPU (`"mixed"`) when the loader's
device is CUDA and on the CPU (`device_id=None`) otherwise; every later op runs where its input
lives. After DALI, in torch and without a host sync (depthkit.loader.postprocess): the colour
matrix on bg and fgbg and, on the GPU, the grid distortion of all four images.

Epochs: a loader builds one pipeline (per split and resolution) and runs it epoch after epoch,
resetting it in between (depthkit.loader.epochs). Its batches are fixed by (seed, rank, the
epoch it was built for, the epochs since):

- `iter()` yields epoch `epoch`; when it hands out that epoch's last batch, `epoch` moves on
  to the next one, so `set_epoch(e)` with the loader's next epoch changes nothing;
- the pipeline is (re)built, seeded from (seed, e, rank), when the next `iter()` is for any
  other epoch e: the first one, a `set_epoch` jump, or after an iteration stopped early (it
  restarts its epoch). So two new loaders run through epochs 0, 1, 2 give the same batches,
  while a new loader set to epoch 1 gives other (equally random) batches than epoch 1 after 0;
- the shard files are read in manifest order; what changes the order from one epoch to the
  next is the reader's shuffle buffer, whose state continues across epochs (the shards were
  shuffled when written), and the reader moving each rank on to the next shard every epoch.

`state_dict()` is where the last batch handed out left the loader, with the pipeline's DALI
checkpoint; a new loader given it by `load_state_dict` continues with exactly the batches the
first would have yielded next. A state without a checkpoint (or from other settings) rebuilds
its epoch from (seed, epoch, rank) and decodes and drops the batches already handed out.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from depthkit.core.errors import DepthkitError
from depthkit.loader.backgrounds import BackgroundBank
from depthkit.loader.config import DEFAULT_NORM, LoaderConfig, device_id, shard_range
from depthkit.loader.epochs import EpochRun, rank_batches, setup_key, start_run
from depthkit.loader.graph import GraphSpec
from depthkit.loader.postprocess import NORMALISED, PostProcess
from depthkit.shard import schema
from depthkit.shard.manifest import background_file, load_manifest, split_files
from depthkit.shard.preflight import check_split_files, find_bad_sample

log = logging.getLogger(__name__)


class Loader:
    """Iterable of batches from a shard folder; one epoch per `iter()`; see LoaderConfig."""

    def __init__(self, cfg: LoaderConfig, graph: GraphSpec, sizes: list[int]) -> None:
        self.cfg = cfg
        self.epoch = 0
        self.norm = graph.norm
        self._graph = graph
        self._sizes = sizes  # samples per shard file, in manifest order
        self._post = PostProcess(graph.norm, cfg.augment, graph.gpu, cfg.channels_last)
        self._run: EpochRun | None = None
        self._resume: int | None = None  # the epoch a loaded mid-epoch position is in
        self._skip = 0  # batches to decode and drop there (a state without a checkpoint)

    @property
    def num_samples(self) -> int:
        """Samples in the split (all ranks)."""
        return sum(self._sizes)

    def __len__(self) -> int:
        """Batches of the epoch the next `iter()` runs (all of them, also after a resume)."""
        run = self._reusable()
        return self._batches(0 if run is None else run.rounds + (run.epoch < self.epoch))

    def _batches(self, rounds: int) -> int:
        return rank_batches(self.cfg, self.num_samples, rounds)

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch the next `iter()` yields (see the module docstring)."""
        self.epoch = int(epoch)

    def close(self) -> None:
        """Release the pipeline (its threads and buffers); the next `iter()` builds anew."""
        self._run = None

    def _reusable(self) -> EpochRun | None:
        """The run the next `iter()` continues, or None when it builds a new pipeline."""
        run = self._run
        if run is None:
            return None
        if run.epoch == self.epoch and (run.done == 0 or self._resume == self.epoch):
            return run
        if run.epoch + 1 == self.epoch and run.done >= self._batches(run.rounds):
            return run  # every batch of the previous epoch handed out, its end not yet read
        return None

    def _start(self) -> EpochRun:
        """The run, standing at the next batch of `epoch` to hand out."""
        run = self._reusable()
        if run is None:
            self._run = None  # the old pipeline goes before the new one is built
            run = self._run = start_run(self._graph, self.cfg, self.epoch)
        elif run.epoch < self.epoch:
            run.finish()  # the previous epoch's end, read only now that another is asked for
        if self._resume == self.epoch:
            for _ in range(self._skip):
                run.take()
        self._resume, self._skip = None, 0
        return run

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        """The epoch's batches; nothing past its last one is read until the next epoch."""
        if len(self) == 0:
            return
        run = None
        try:
            run = self._start()
            n = self._batches(run.rounds)
            while run.done < n:
                out = run.take()
                if run.done == n:
                    self.epoch = run.epoch + 1
                yield self._finish(out)
        except RuntimeError as err:
            self._run = None  # a failed pipeline is not reused
            at = (run.done, run.rounds) if run is not None else (0, 0)
            mapped = self._data_error(str(err), *at)
            if mapped is None:
                raise
            raise mapped from None

    def _finish(self, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Torch-side steps (depthkit.loader.postprocess)."""
        return self._post(out)

    def state_dict(self) -> dict[str, Any]:
        """Where the loader stands (plain types): the epoch, the batches of it handed out and,
        once a pipeline runs, its DALI checkpoint and what it is valid for."""
        run = self._run
        if self._resume == self.epoch and self._skip:
            return {"epoch": self.epoch, "batch": self._skip}
        if run is None or (run.epoch != self.epoch and self._reusable() is not run):
            return {"epoch": self.epoch, "batch": 0}
        return {"epoch": run.epoch, "batch": run.done, "rounds": run.rounds, "built": run.built,
                "setup": setup_key(self.cfg, self.num_samples), "dali": run.checkpoint()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Make the next `iter()` continue where `state` (from `state_dict`) stood: the rest of
        its epoch, or the next epoch when it stood at the end of one."""
        epoch, batch = int(state["epoch"]), int(state["batch"])
        self._run, self._resume, self._skip = None, None, 0
        self.epoch = epoch
        run, why = self._restore(state)
        if run is not None:
            self._run = run
            if batch >= self._batches(run.rounds):
                self.epoch = epoch + 1
            else:
                self._resume = epoch
            return
        if batch >= self._batches(0):
            self.epoch = epoch + 1
        elif batch > 0:
            self._resume, self._skip = epoch, batch
        if batch > 0:
            log.warning("loader: %s; %s", why,
                        f"epoch {self.epoch} starts from a new pipeline" if self._skip == 0 else
                        f"epoch {epoch} is decoded again and its first {batch} batches dropped")

    def _restore(self, state: dict[str, Any]) -> tuple[EpochRun | None, str]:
        """The run restored from the state's DALI checkpoint, or (None, why not)."""
        where = f"the saved {self.cfg.split} position (epoch {state['epoch']}, batch " \
                f"{state['batch']})"
        if not state.get("dali"):
            return None, f"{where} has no DALI checkpoint"
        if state.get("setup") != setup_key(self.cfg, self.num_samples):
            return None, f"{where} is from other loader settings"
        try:
            run = start_run(self._graph, self.cfg, int(state["built"]), str(state["dali"]))
        except (RuntimeError, ValueError) as err:
            return None, f"{where} did not restore ({str(err).strip().splitlines()[0]})"
        run.epoch, run.done, run.rounds = int(state["epoch"]), int(state["batch"]), \
            int(state["rounds"])
        return run, ""

    def _data_error(self, text: str, done: int, rounds: int = 0) -> DepthkitError | None:
        """The one-line error for a DALI failure on the shard data, naming the damaged file
        and sample where the members this rank had read show one; None when the failure is
        not about the data (the original error then propagates). `done`: batches of the epoch
        taken; `rounds`: epochs the pipeline had finished (which shard the rank was on)."""
        op = _DALI_OP.search(text)
        if op is None or op.group(1) not in _DATA_OPS or (
                op.group(1) == "python_function" and "background id" not in text):
            return None
        cfg, g = self.cfg, self._graph
        root = Path(cfg.shards)
        shard = (cfg.rank + rounds) % cfg.world_size
        start, end = shard_range(self.num_samples, shard, cfg.world_size)
        read = cfg.shuffle_buffer + (done + cfg.prefetch + 4) * cfg.batch_size  # an upper bound
        try:  # the files may have changed since the pre-flight
            check_split_files(root, load_manifest(root), cfg.res, cfg.split)
            found = find_bad_sample(root, list(zip(g.tars, g.indexes, strict=True)),
                                    (start, min(end, start + read)), frozenset(g.bank.ids()))
        except DepthkitError as err:
            found = err
        return found or DepthkitError(
            f"the loader failed reading the {cfg.split} shards of {root} at {cfg.res} px "
            f"({_dali_reason(text)}); run `depthkit verify -s {root}` to find the damaged file")


_DALI_OP = re.compile(r"Error in \w+ operator `nvidia\.dali\.fn\.([\w.]+)`")
_DATA_OPS = ("readers.webdataset", "peek_image_shape", "decoders.image", "python_function")


def _dali_reason(text: str) -> str:
    """The line of a DALI error that says what went wrong (after "encountered:")."""
    lines = [ln.strip() for ln in text.split("encountered:", 1)[-1].splitlines() if ln.strip()]
    return re.sub(r'^Assert on ".*?" failed: ', "", lines[0] if lines else "DALI error")


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
