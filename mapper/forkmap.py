"""Independent pieces of one answer, side by side on the machine's cores.

A cold ``tessera run`` spends most of its time on work that parallelises perfectly: the
tiling confirmation of each distinct GEMM shape (its candidates simulated alone), and each
decode step of a generation (the kernels the context changes, lowered and simulated
alone). Each piece is a pure function of its inputs, so the answer is the one a single
process gives; only the wall time changes. Workers are forked (Linux) and inherit the
function, closures included; each opens its own kernel-cost cache connection
(``simulator.cache.current`` is per process). In a sweep's pool worker (``one_process``,
its initializer), a daemonic process, with ``TESSERA_WORKERS=1`` or on another platform,
pieces run one after another.
A function's side effects happen in the workers: what the caller needs back must be in
the returned values.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor

from isa.errors import TesseraError


class WorkersError(TesseraError, ValueError):
    """A worker count that is not a whole number (named in the message)."""


_FN: Callable | None = None  # the mapped function, inherited by forked workers
_IN_WORKER = False  # a worker maps what it is given one piece after another
_ONE_PROCESS = False  # set in a sweep's pool workers: the pool already fills the cores


def one_process() -> None:
    """Make this process map every piece itself (a process pool's initializer: a sweep's
    workers, one per core, must not each fork one more per core)."""
    global _ONE_PROCESS
    _ONE_PROCESS = True


def workers() -> int:
    """How many processes may work at once: ``TESSERA_WORKERS``, else the usable cores."""
    if sys.platform != "linux" or _IN_WORKER or _ONE_PROCESS or \
            multiprocessing.current_process().daemon:
        return 1
    text = os.environ.get("TESSERA_WORKERS", "").strip()
    try:
        wanted = int(text or "0")
    except ValueError:
        wanted = -1
    if wanted < 0:
        raise WorkersError(f"TESSERA_WORKERS: expected a whole number of processes (0 or "
                           f"unset: one per core), got {text!r}")
    return max(1, wanted or len(os.sched_getaffinity(0)))


def fork_map(fn: Callable, items: Sequence) -> Iterator:
    """``map(fn, items)`` in order, over forked workers when there are two or more of each
    (results are yielded as they come in, in order, so a progress bar can follow)."""
    n = min(workers(), len(items))
    if n < 2:
        yield from map(fn, items)
        return
    global _FN, _ITEMS
    _FN, _ITEMS = fn, items
    try:
        with ProcessPoolExecutor(max_workers=n,
                                 mp_context=multiprocessing.get_context("fork")) as pool:
            yield from pool.map(_call, range(len(items)))
    finally:
        _FN, _ITEMS = None, ()


# the pieces, inherited by forked workers as the function is: a worker is sent a piece's
# index, not the piece (pickling a kernel's programs to send them, and unpickling them in
# the worker, was 5% of a training layer's cold run)
_ITEMS: Sequence = ()


def _call(index: int):  # noqa: ANN202
    global _IN_WORKER
    _IN_WORKER = True
    return _FN(_ITEMS[index])  # type: ignore[misc]


def counted(fn: Callable, counters: Callable | None) -> Callable:
    """``fn`` returning ``(value, how far counters() moved)``: a worker's counts (the
    kernel-cost cache's hits and misses) carried back to the caller."""
    def run(item):  # noqa: ANN001, ANN202
        if not _IN_WORKER or counters is None:  # in the caller's process: counted there
            return fn(item), None
        before = counters()
        value = fn(item)
        return value, tuple(a - b for a, b in zip(counters(), before))
    return run


def gathered(pairs: Iterable, add: Callable | None) -> list:
    """The values of ``counted`` results, their count deltas added with ``add``."""
    out = []
    for value, delta in pairs:
        if add is not None and delta is not None:
            add(delta)
        out.append(value)
    return out
