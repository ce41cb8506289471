"""Tiling confirmations of several GEMMs at once, one per core of the machine.

A model's distinct GEMM shapes are confirmed independently (each simulates its ``top``
candidate tilings alone), so a cold ``tessera run`` spends most of its time on work that
parallelises perfectly. The decisions are the same as one after another (each is a pure
function of its GEMM, the chip and the candidates' simulated times), so this only changes
the wall time. Workers are forked (Linux), inherit the caller's confirmation function and
open their own kernel-cost cache connection (``simulator.cache.current`` is per process);
inside a daemonic process (a sweep's pool worker) or with ``TESSERA_WORKERS=1`` the GEMMs
are decided one after another. A confirmation function's side effects happen in the
workers (its ``counters`` / ``add_counters`` attributes, if any, carry the kernel-cost
cache's counts back).
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor

_JOB: tuple | None = None  # (decide, chip, confirm, top), inherited by forked workers


def workers() -> int:
    """How many processes may confirm at once: ``TESSERA_WORKERS``, else the cores."""
    if sys.platform != "linux" or multiprocessing.current_process().daemon:
        return 1
    try:
        wanted = int(os.environ.get("TESSERA_WORKERS", "0"))
    except ValueError:
        wanted = 0
    return max(1, wanted or len(os.sched_getaffinity(0)))


def decide_all(gemms: Sequence, decide: Callable, chip, confirm, top: int) -> list:  # noqa: ANN001
    """``[decide(g, chip, confirm, top) for g in gemms]``, spread over the workers."""
    n = min(workers(), len(gemms))
    if confirm is None or n < 2:
        return [decide(g, chip, confirm, top) for g in gemms]
    global _JOB
    _JOB = (decide, chip, confirm, top)
    try:
        with ProcessPoolExecutor(max_workers=n,
                                 mp_context=multiprocessing.get_context("fork")) as pool:
            done = list(pool.map(_one, gemms))
    finally:
        _JOB = None
    add = getattr(confirm, "add_counters", None)  # the workers' simulations, counted here
    for _, delta in done:
        if add is not None and delta is not None:
            add(delta)
    return [t for t, _ in done]


def _one(g):  # noqa: ANN001, ANN202
    """One GEMM's decision in a worker, with what the confirmation's counters moved by
    (``confirm.counters``: the kernel-cost cache's hits and misses, if it keeps any)."""
    decide, chip, confirm, top = _JOB  # type: ignore[misc]
    counters = getattr(confirm, "counters", None)
    before = counters() if counters is not None else None
    t = decide(g, chip, confirm, top)
    if before is None:
        return t, None
    return t, tuple(a - b for a, b in zip(counters(), before))
