"""Systolic-array compute time for one matmul tile, as SCALE-Sim models it.

Source: A. Samajdar et al., "A Systematic Methodology for Characterizing Scalability of DNN
Accelerators using SCALE-Sim", ISPASS 2020, and SCALE-Sim 3.0.0's ``compute/systolic_compute_
{ws,os,is}.py`` (demand matrices) and ``memory/double_buffered_scratchpad_mem.py`` ("Total
Cycles"). Documented in docs/timing-systolic.md.

A GEMM C[M,N] (+)= A[M,K] @ W[K,N] is mapped onto an R x C array (R = ``rows``,
C = ``cols``) as spatial rows Sr, spatial columns Sc and a temporal extent T:

    weight stationary  (WS): Sr = K, Sc = N, T = M
    output stationary  (OS): Sr = M, Sc = N, T = K
    input stationary   (IS): Sr = K, Sc = M, T = N

and cut into ceil(Sr/R) x ceil(Sc/C) folds, run one after another. A WS/IS fold preloads
its stationary operand (R cycles), streams T operand vectors skewed over the R rows
(T + R - 1) and drains through the C columns (C - 1): 2R + C + T - 2 cycles. An OS fold has
no preload: R + C + T - 2. SCALE-Sim's "Total Cycles" (ample SRAM, no stalls) is the index of
the last busy cycle, one less than the count, and ``matmul_cycles`` returns exactly that:

    matmul_cycles = folds * (T + fold_overhead) - 1

An edge fold that uses part of the array is charged the whole fold, as in SCALE-Sim.
Everything is integer arithmetic on Python ints: no numpy, no allocation on the fast path.
"""

from __future__ import annotations

import operator

from hardware.chip import Dataflow


def _bad_dataflow(fn: str, dataflow) -> ValueError:
    return ValueError(f"{fn}: dataflow must be one of 'ws', 'os', 'is', got {dataflow!r}")


def _sizes(fn: str, m, k, n, rows, cols) -> tuple[int, int, int, int, int]:
    """The five sizes as ints (numpy integers accepted), or ValueError naming the first bad
    one. Slow path: callers first test for the common case of five positive Python ints."""
    out = []
    for name, v in (("m", m), ("k", k), ("n", n), ("rows", rows), ("cols", cols)):
        try:
            iv = operator.index(v) if not isinstance(v, bool) else 0
        except TypeError:
            iv = 0
        if iv <= 0:
            raise ValueError(f"{fn}: {name} must be a positive int, got {v!r}")
        out.append(iv)
    return tuple(out)  # type: ignore[return-value]


def _map(fn: str, m: int, k: int, n: int, dataflow) -> tuple[int, int, int]:
    """(Sr, Sc, T) of the GEMM for ``dataflow`` (SCALE-Sim's operand-matrix mapping)."""
    if dataflow == "ws":
        return k, n, m
    if dataflow == "os":
        return m, n, k
    if dataflow == "is":
        return k, m, n
    raise _bad_dataflow(fn, dataflow)


def _fast(m, k, n, rows, cols) -> bool:
    """All five are positive Python ints (no coercion needed)."""
    return (type(m) is int and type(k) is int and type(n) is int and type(rows) is int
            and type(cols) is int and m > 0 and k > 0 and n > 0 and rows > 0 and cols > 0)


def fold_overhead(rows: int, cols: int, dataflow: Dataflow) -> int:
    """Fill and drain cycles of one fold beyond its T streaming cycles:
    2R + C - 2 for WS and IS (R of them preload the stationary operand), R + C - 2 for OS."""
    if dataflow == "os":
        return rows + cols - 2
    if dataflow == "ws" or dataflow == "is":
        return 2 * rows + cols - 2
    raise _bad_dataflow("fold_overhead", dataflow)


def matmul_folds(m: int, k: int, n: int, rows: int, cols: int, dataflow: Dataflow) -> int:
    """Number of folds, ceil(Sr / R) * ceil(Sc / C) (SCALE-Sim's row_fold * col_fold)."""
    if not _fast(m, k, n, rows, cols):
        m, k, n, rows, cols = _sizes("matmul_folds", m, k, n, rows, cols)
    sr, sc, _ = _map("matmul_folds", m, k, n, dataflow)
    return -(-sr // rows) * -(-sc // cols)


def matmul_cycles(m: int, k: int, n: int, rows: int, cols: int, dataflow: Dataflow) -> int:
    """Compute cycles of C[m,n] (+)= A[m,k] @ W[k,n] on one rows x cols array, exactly
    SCALE-Sim 3.0.0's "Total Cycles" with ample SRAM (Samajdar et al., ISPASS 2020):

        folds * (T + 2R + C - 2) - 1    (WS, IS)
        folds * (T + R + C - 2) - 1     (OS)

    with folds = ceil(Sr/R) * ceil(Sc/C) and (Sr, Sc, T) = (K, N, M) WS, (M, N, K) OS,
    (K, M, N) IS. The trailing -1 is SCALE-Sim's: it reports the last cycle's 0-based index.
    """
    if not (type(m) is int and type(k) is int and type(n) is int and type(rows) is int
            and type(cols) is int and m > 0 and k > 0 and n > 0 and rows > 0 and cols > 0):
        m, k, n, rows, cols = _sizes("matmul_cycles", m, k, n, rows, cols)  # hot: inlined
    if dataflow == "ws":
        return -(-k // rows) * -(-n // cols) * (m + 2 * rows + cols - 2) - 1
    if dataflow == "os":
        return -(-m // rows) * -(-n // cols) * (k + rows + cols - 2) - 1
    if dataflow == "is":
        return -(-k // rows) * -(-m // cols) * (n + 2 * rows + cols - 2) - 1
    raise _bad_dataflow("matmul_cycles", dataflow)


def pipelined_cycles(m: int, k: int, n: int, rows: int, cols: int, dataflow: Dataflow) -> int:
    """Folds overlapped (not SCALE-Sim): double-buffered weights / outputs let fold i+1 load
    while fold i streams (TPUv1's weight FIFO), so a fold costs max(T, R) cycles and the
    array fills and drains once per instruction: folds * max(T, R) + fold_overhead - 1."""
    if not _fast(m, k, n, rows, cols):
        m, k, n, rows, cols = _sizes("pipelined_cycles", m, k, n, rows, cols)
    sr, sc, t = _map("pipelined_cycles", m, k, n, dataflow)
    folds = -(-sr // rows) * -(-sc // cols)
    return folds * max(t, rows) + fold_overhead(rows, cols, dataflow) - 1


def utilization(m: int, k: int, n: int, rows: int, cols: int, dataflow: Dataflow) -> float:
    """Useful MACs / (PEs x busy cycles) = M*K*N / (R*C * (matmul_cycles + 1)), in (0, 1].

    Below 1 from fill/drain and ragged edge folds. The denominator counts busy cycles
    (SCALE-Sim's "Total Cycles" + 1), so this never exceeds 1; SCALE-Sim's own "Overall
    Util %" divides by "Total Cycles" and reads slightly higher."""
    busy = matmul_cycles(m, k, n, rows, cols, dataflow) + 1
    return operator.index(m) * operator.index(k) * operator.index(n) / (
        operator.index(rows) * operator.index(cols) * busy)
