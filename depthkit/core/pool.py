"""Worker processes for synth, shard and verify: a pre-forked pool, and an in-order map over it
that keeps a bounded window of tasks in flight (or runs inline without a pool).

The pool's workers are forked and confirmed running before the caller starts any thread (a
progress bar), and never replaced. SIGTERM and Ctrl-C are held back while they fork: one
that lands in the interpreter's at-fork hooks is otherwise swallowed ("Exception ignored"),
and the run carries on as if never stopped. It is delivered, as `Terminated`, once the
workers run, inside the block that shuts them down.
"""

from __future__ import annotations

import gc
import os
import signal
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from multiprocessing import get_context
from typing import Any, TypeVar

from depthkit.core.workers import STOP_SIGNALS, init_worker

T = TypeVar("T")
R = TypeVar("R")


@contextmanager
def worker_pool(workers: int) -> Iterator[ProcessPoolExecutor | None]:
    """A process pool with its `workers` already forked (fork, unlike spawn, needs no
    `__main__` guard in the caller), shut down on leaving; None for 0 workers. The workers
    end with this process, even when it is killed (depthkit.core.workers)."""
    if workers <= 0:
        yield None
        return
    held = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    pool = None
    try:
        pool = ProcessPoolExecutor(workers, mp_context=get_context("fork"),
                                   initializer=init_worker, initargs=(os.getpid(),))
        _start_workers(pool, workers)
        signal.pthread_sigmask(signal.SIG_SETMASK, held)  # a stop that came raises here
        yield pool
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def _start_workers(pool: ProcessPoolExecutor, workers: int) -> None:
    """Fork every worker now and wait until each has run a task."""
    # Objects alive at the fork are never collected in the workers: a DALI pipeline the
    # caller still holds would otherwise run its __del__ there and wait forever for its
    # threads, which fork does not copy.
    gc.freeze()
    try:
        for f in [pool.submit(int) for _ in range(workers)]:
            f.result()
    finally:
        gc.unfreeze()


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
