"""Worker processes for shard conversion and checking: a pre-forked pool, and an in-order map
over it that keeps a bounded window of tasks in flight (or runs inline without a pool)."""

from __future__ import annotations

import gc
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing import get_context
from typing import Any, TypeVar

from depthkit.core.workers import init_worker

T = TypeVar("T")
R = TypeVar("R")


def start_pool(workers: int) -> ProcessPoolExecutor | None:
    """A process pool with its workers already forked (before any progress-bar thread
    starts; fork, unlike spawn, needs no `__main__` guard in the caller), or None for 0.
    The workers end with this process, even when it is killed (depthkit.core.workers)."""
    if workers <= 0:
        return None
    pool = ProcessPoolExecutor(workers, mp_context=get_context("fork"),
                               initializer=init_worker, initargs=(os.getpid(),))
    # Objects alive at the fork are never collected in the workers: a DALI pipeline the
    # caller still holds would otherwise run its __del__ there and wait forever for its
    # threads, which fork does not copy.
    gc.freeze()
    try:
        for f in [pool.submit(int) for _ in range(workers)]:
            f.result()
    finally:
        gc.unfreeze()
    return pool


def ordered_map(pool: ProcessPoolExecutor | None, workers: int, fn: Callable[..., R],
                tasks: Iterable[tuple[T, tuple[Any, ...] | None]], empty: R
                ) -> Iterator[tuple[T, R]]:
    """(task, fn(*args)) for each (task, args) in input order; args None means nothing to
    compute (the result is `empty`). With a pool, at most 2 * workers + 1 tasks are in
    flight, so memory stays bounded however long `tasks` is."""
    if pool is None:
        for task, args in tasks:
            yield task, fn(*args) if args is not None else empty
        return
    pending: deque[tuple[T, Future | None]] = deque()
    window = 2 * workers + 1
    for task, args in tasks:
        pending.append((task, pool.submit(fn, *args) if args is not None else None))
        if len(pending) >= window:
            yield _result(pending.popleft(), empty)
    while pending:
        yield _result(pending.popleft(), empty)


def _result(pending: tuple[T, Future | None], empty: R) -> tuple[T, R]:
    task, fut = pending
    return task, fut.result() if fut is not None else empty
