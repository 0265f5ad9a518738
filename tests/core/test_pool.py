"""The shard worker pool forks safely while the caller holds a DALI pipeline."""

from __future__ import annotations

import gc
import os
import signal
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

import pytest

from depthkit.core.pool import worker_pool
from depthkit.core.workers import STOP_SIGNALS, Terminated, _raise_terminated


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
        pools = worker_pool(1)
        pool = pools.__enter__()
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
        pools.__exit__(None, None, None)


def _blocked_stops() -> set[int]:
    return set(signal.pthread_sigmask(signal.SIG_BLOCK, [])) & set(STOP_SIGNALS)


def test_stops_are_held_only_while_the_workers_fork() -> None:
    with worker_pool(2) as pool:
        assert pool is not None
        assert _blocked_stops() == set()  # the caller can be stopped again
        assert list(pool.map(_blocked_stops_in_worker, range(2))) == [set(), set()]
    assert _blocked_stops() == set()


def _blocked_stops_in_worker(_: int) -> set[int]:
    return _blocked_stops()


def test_a_signal_held_back_during_the_fork_is_raised_and_ends_the_workers(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import depthkit.core.pool as pool_mod
    import depthkit.core.workers as workers_mod

    started, procs = pool_mod._start_workers, []

    def start_and_signal(pool, workers: int) -> None:
        started(pool, workers)
        procs.extend(pool._processes.values())
        os.kill(os.getpid(), signal.SIGTERM)  # arrives while stops are held back

    monkeypatch.setattr(pool_mod, "_start_workers", start_and_signal)
    monkeypatch.setattr(workers_mod, "_stopping", False)  # restored after the test
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        with pytest.raises(Terminated), worker_pool(2):
            pytest.fail("the body ran although a stop came first")  # pragma: no cover
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert len(procs) == 2
    for proc in procs:
        proc.join(timeout=30)
        assert not proc.is_alive()
    assert _blocked_stops() == set()
