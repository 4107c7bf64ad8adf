"""The worker pool of build-dataset and annotate: calls in order, a bounded window in flight, workers that die
with their parent and use one BLAS thread.

    for ctx, result in ordered_map(fn, ((ctx, arg), ...), workers=2, executor="process", window=8): ...
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import signal
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

from threadpoolctl import threadpool_limits


def single_threaded_blas() -> None:
    """One BLAS thread per worker: the heatmap's small matmul is ~30x slower when OpenBLAS spreads it over
    threads on a busy 2-core machine (35 ms vs 1.2 ms per 640x480 map); the pool is the parallelism."""
    threadpool_limits(limits=1, user_api="blas")


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _init_worker(parent: int) -> None:
    """Pool worker setup: die with the parent, one BLAS thread.

    A process pool's workers outlive a parent killed with -9 (each holds ~500 MB: torch, the tokenizer),
    blocked forever on their task queue. Linux sends PDEATHSIG to a child when the thread that forked it
    exits, which for a pool forked from this (main) thread means the process. The getppid check covers a
    parent that died before prctl ran.
    """
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)
    single_threaded_blas()


def ordered_map(
    fn: Callable[[Any], Any], items: Iterable[tuple[Any, Any]], *, workers: int, executor: str, window: int
) -> Iterator[tuple[Any, Any]]:
    """Yield (ctx, fn(arg)) for (ctx, arg) in items, in order, with at most `window` calls in flight.

    The window is what keeps memory flat: results wait in the deque only until everything before them is
    written, and no more than `window` of them exist at once.
    """
    if workers <= 0:
        for ctx, arg in items:
            yield ctx, fn(arg)
        return
    pool: Executor
    if executor == "process":
        # fork: workers inherit the imported modules and the loaded tokenizer instead of re-importing torch.
        fork = mp.get_context("fork")
        pool = ProcessPoolExecutor(
            workers, mp_context=fork, initializer=_init_worker, initargs=(os.getpid(),)
        )
    else:
        pool = ThreadPoolExecutor(workers)
    with pool:
        pending: deque = deque()
        for ctx, arg in items:
            pending.append((ctx, pool.submit(fn, arg)))
            if len(pending) >= window:
                ctx0, fut = pending.popleft()
                yield ctx0, fut.result()
        while pending:
            ctx0, fut = pending.popleft()
            yield ctx0, fut.result()
