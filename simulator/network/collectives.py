"""Collective algorithms as swappable pieces: each turns a collective into steps of
concurrent point-to-point transfers (ASTRA-sim's layering of collectives over a network).

A step is a list of ``(src, dst, bytes)``; a step starts when the previous one has finished
everywhere. ``n`` is the bytes of the full buffer as NCCL counts it: the all-reduce buffer,
the gathered all-gather output, the reduce-scatter input, the whole all-to-all send buffer.
"""

from __future__ import annotations

import math
from collections.abc import Callable

Step = list[tuple[int, int, float]]
Algorithm = Callable[[list[int], float], list[Step]]


def ring_reduce_scatter(g: list[int], n: float) -> list[Step]:
    """p - 1 steps; in each, every chip passes n/p bytes to its ring successor."""
    p = len(g)
    return [[(g[i], g[(i + 1) % p], n / p) for i in range(p)] for _ in range(p - 1)]


def ring_all_gather(g: list[int], n: float) -> list[Step]:
    return ring_reduce_scatter(g, n)


def ring_all_reduce(g: list[int], n: float) -> list[Step]:
    """Reduce-scatter then all-gather: 2(p-1) steps of n/p — 2(p-1)/p n / B on a ring."""
    return ring_reduce_scatter(g, n) + ring_all_gather(g, n)


def bidir_ring_all_reduce(g: list[int], n: float) -> list[Step]:
    """Half the buffer each way round the ring, both directions at once."""
    p = len(g)
    return [[(g[i], g[(i + 1) % p], n / (2 * p)) for i in range(p)] +
            [(g[i], g[(i - 1) % p], n / (2 * p)) for i in range(p)]
            for _ in range(2 * (p - 1))]


def direct_reduce_scatter(g: list[int], n: float) -> list[Step]:
    """One step: every chip sends each peer the peer's n/p slice."""
    return [[(a, b, n / len(g)) for a in g for b in g if a != b]]


def direct_all_reduce(g: list[int], n: float) -> list[Step]:
    """One-shot: reduce-scatter directly, then all-gather directly (2 steps)."""
    return direct_reduce_scatter(g, n) + direct_reduce_scatter(g, n)


def halving_doubling_all_reduce(g: list[int], n: float) -> list[Step]:
    """Recursive halving (reduce-scatter) then doubling (all-gather): 2 log2 p steps."""
    p = len(g)
    if p & (p - 1):
        return ring_all_reduce(g, n)
    steps: list[Step] = []
    size, dist = n / 2, p // 2
    while dist:
        steps.append([(g[i], g[i ^ dist], size) for i in range(p)])
        size, dist = size / 2, dist // 2
    return steps + list(reversed(steps))


def direct_all_to_all(g: list[int], n: float) -> list[Step]:
    """Every chip sends each peer its n/p block at once."""
    return direct_reduce_scatter(g, n)


def ring_broadcast(g: list[int], n: float, root: int = 0) -> list[Step]:
    """A chain from the root: p - 1 steps of the whole buffer (unpipelined)."""
    p = len(g)
    start = g.index(root) if root in g else 0
    order = g[start:] + g[:start]
    return [[(order[i], order[i + 1], n)] for i in range(p - 1)]


def hierarchical_all_reduce(rows: list[list[int]], n: float) -> list[Step]:
    """2-D: reduce-scatter along each row, all-reduce the n/X slice down each column, then
    all-gather along each row (rows run at once, then columns)."""
    x = len(rows[0])
    cols = [[r[j] for r in rows] for j in range(x)]

    def merge(groups: list[list[int]], fn, size: float) -> list[Step]:  # noqa: ANN001
        parts = [fn(grp, size) for grp in groups]
        return [sum((pp[k] for pp in parts), []) for k in range(len(parts[0]))]
    return (merge(rows, ring_reduce_scatter, n) + merge(cols, ring_all_reduce, n / x) +
            merge(rows, ring_all_gather, n))


ALGORITHMS: dict[str, dict[str, Algorithm]] = {
    "ring": {"allreduce": ring_all_reduce, "allgather": ring_all_gather,
             "reducescatter": ring_reduce_scatter, "alltoall": direct_all_to_all},
    "bidir-ring": {"allreduce": bidir_ring_all_reduce, "allgather": ring_all_gather,
                   "reducescatter": ring_reduce_scatter, "alltoall": direct_all_to_all},
    "direct": {"allreduce": direct_all_reduce, "allgather": direct_reduce_scatter,
               "reducescatter": direct_reduce_scatter, "alltoall": direct_all_to_all},
    "halving-doubling": {"allreduce": halving_doubling_all_reduce,
                         "allgather": ring_all_gather, "reducescatter": ring_reduce_scatter,
                         "alltoall": direct_all_to_all},
}


def default_algorithm(topology_kind: str) -> str:
    """Bandwidth-optimal rings everywhere; meshes and tori use the 2-D variant for
    all-reduce (see ``hierarchical_all_reduce``) when the group is the whole grid."""
    return "ring"


def steps_for(op: str, algorithm: str, group: list[int], n: float, root: int = 0,
              grid: list[list[int]] | None = None) -> list[Step]:
    if op == "bcast":
        return ring_broadcast(group, n, root)
    if algorithm == "hierarchical" and op == "allreduce" and grid and len(grid) > 1:
        return hierarchical_all_reduce(grid, n)
    table = ALGORITHMS.get(algorithm if algorithm != "hierarchical" else "ring")
    if table is None:
        raise ValueError(f"unknown collective algorithm '{algorithm}' (expected "
                         f"{', '.join([*ALGORITHMS, 'hierarchical'])})")
    return table[op](group, n)


__all__ = ["ALGORITHMS", "Step", "default_algorithm", "math", "steps_for"]
