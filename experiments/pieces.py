"""Independent pieces of one answer (the kernels of a phase, the decode steps of a
generation, the layer kernels of a training step, the rows of a measured file) computed
side by side on the machine's cores (``mapper.forkmap``), with the workers' kernel-cost
cache counts added to this process's so the summary line stays true."""

from __future__ import annotations

from collections.abc import Callable, Sequence


def each(fn: Callable, items: Sequence, bar: Callable | None = None) -> list:
    """``[fn(x) for x in items]`` over forked workers, in order; ``bar(iterator, total)``
    wraps the results as they arrive (a progress bar)."""
    from mapper.forkmap import counted, fork_map, gathered
    from simulator import cache

    done = fork_map(counted(fn, cache.counts), items)
    return gathered(bar(done, len(items)) if bar is not None else done, cache.add_counts)
