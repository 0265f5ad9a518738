"""One DALI pipeline run epoch after epoch: build (or restore from a checkpoint), take batches,
finish an epoch (drain the reader's epoch, reset), checkpoint.

DALI's reader owns the epoch: on every rank it is ceil(largest shard / batch) batches (the
last padded; the iterator's PARTIAL policy trims the padding), and after each epoch the reader
moves on to the next shard (`stick_to_shard=False`), whose size may differ by one sample. A
rank hands out `rank_batches` of them; the rest (at most one batch: the padded one of a
drop_last epoch, or an empty one) is read and dropped before `reset()`, which DALI ignores
before the end of its epoch. The reader's shuffle buffer and every random op's state carry on
from one epoch into the next.
"""

from __future__ import annotations

import base64
import hashlib
import math
from dataclasses import dataclass
from typing import Any

from nvidia.dali import pipeline_def
from nvidia.dali.plugin.base_iterator import LastBatchPolicy
from nvidia.dali.plugin.pytorch import DALIGenericIterator
from torch import Tensor

from depthkit.loader.config import LoaderConfig, device_id, epoch_seed, shard_range
from depthkit.loader.graph import OUTPUTS, READER_NAME, GraphSpec, define


def rank_batches(cfg: LoaderConfig, total: int, rounds: int) -> int:
    """Batches one rank hands out in the epoch after `rounds` finished ones of its pipeline:
    drop_last, the smallest shard's full batches (the same on every rank, every epoch); else
    every sample of the shard the reader is on then."""
    b, w = cfg.batch_size, cfg.world_size
    if cfg.drop_last:
        return (total // w) // b
    start, end = shard_range(total, (cfg.rank + rounds) % w, w)
    return math.ceil((end - start) / b)


def setup_key(cfg: LoaderConfig, total: int) -> str:
    """A digest of the settings a DALI checkpoint is only valid for (graph, batch, sharding)."""
    text = repr((cfg.split, cfg.res, total, cfg.batch_size, cfg.rank, cfg.world_size, cfg.seed,
                 cfg.shuffle, cfg.shuffle_buffer, cfg.drop_last, cfg.bg_bank,
                 cfg.device.split(":")[0], repr(cfg.augment)))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class EpochRun:
    """A built pipeline and its iterator, and where they stand."""

    pipe: Any
    it: DALIGenericIterator
    built: int  # the epoch its seed was drawn for
    epoch: int  # the epoch it is in
    done: int = 0  # batches of `epoch` taken (handed out or skipped)
    rounds: int = 0  # epochs finished since the build: the reader's shard is (rank + rounds) % w

    def take(self) -> dict[str, Tensor]:
        """The next batch's DALI outputs (on the pipeline's devices)."""
        out = next(self.it)[0]
        self.done += 1
        return out

    def finish(self) -> None:
        """Drop what is left of the reader's epoch and start the next one."""
        for _ in range(len(self.it) - self.done):
            next(self.it)
        self.it.reset()
        self.epoch, self.done, self.rounds = self.epoch + 1, 0, self.rounds + 1

    def checkpoint(self) -> str:
        """The pipeline's and iterator's state after the batches taken, as base64 text."""
        return base64.b64encode(self.it.checkpoints()[0]).decode("ascii")


def start_run(graph: GraphSpec, cfg: LoaderConfig, built: int,
              checkpoint: str | None = None) -> EpochRun:
    """A pipeline seeded from (seed, built, rank), or restored from `checkpoint` (from
    `EpochRun.checkpoint`; the caller sets where it stands), with its iterator."""
    # Only the GPU graph routes samples with `if`s; DALI's conditionals transpile the graph
    # into a module file in the temp folder, which a killed process leaves behind.
    pipe_fn = pipeline_def(define, enable_conditionals=graph.gpu, enable_checkpointing=True)
    restore = {} if checkpoint is None else {"checkpoint": base64.b64decode(checkpoint)}
    pipe = pipe_fn(
        graph,
        batch_size=cfg.batch_size,
        num_threads=cfg.num_threads,
        device_id=device_id(cfg.device),
        seed=epoch_seed(cfg.seed, built, cfg.rank),
        prefetch_queue_depth=cfg.prefetch,
        **restore,
    )
    pipe.build()
    it = DALIGenericIterator([pipe], list(OUTPUTS), reader_name=READER_NAME,
                             last_batch_policy=LastBatchPolicy.PARTIAL, auto_reset=False)
    return EpochRun(pipe, it, built=built, epoch=built)
