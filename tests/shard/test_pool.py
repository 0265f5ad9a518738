"""The shard worker pool forks safely while the caller holds a DALI pipeline."""

from __future__ import annotations

import gc
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

import pytest

from depthkit.shard.pool import start_pool


class _Cycle:
    """A reference cycle (collected only by the cyclic GC) holding an object."""

    def __init__(self, held: object) -> None:
        self.held, self.me = held, self


def test_workers_do_not_collect_a_live_pipeline_of_the_parent(shard_root: Path) -> None:
    from depthkit.loader import LoaderConfig, build_loader

    loader = build_loader(LoaderConfig(shard_root, res=32, batch_size=4, shuffle=False))
    assert sum(1 for _ in loader) == len(loader)  # its pipeline is built and kept
    gc.disable()  # keep the cycle uncollected in the parent until the fork
    try:
        _Cycle(loader)
        del loader
        pool = start_pool(1)
    finally:
        gc.enable()
    assert pool is not None
    try:
        # a collection in the worker would run the pipeline's __del__, which waits forever
        # for DALI threads that fork did not copy
        pool.submit(gc.collect).result(timeout=60)
    except FutureTimeout:
        pytest.fail("a worker hung collecting the parent's DALI pipeline")
    finally:
        for proc in list(pool._processes.values()):
            proc.kill()
        pool.shutdown(wait=False, cancel_futures=True)
