"""Systolic-array compute time for one matmul tile, as SCALE-Sim models it.

SCALE-Sim (Samajdar et al., ISPASS 2020) maps a GEMM C[M,N] = A[M,K] W[K,N] onto an
R x C array by dataflow, as spatial rows Sr, spatial columns Sc and a temporal extent T:

    output stationary  (OS): Sr = M, Sc = N, T = K
    weight stationary  (WS): Sr = K, Sc = N, T = M
    input stationary   (IS): Sr = K, Sc = M, T = N

The work is cut into ceil(Sr/R) x ceil(Sc/C) folds. A weight- or input-stationary fold
first loads its stationary operand (R cycles), then streams T operands through the array and
drains: 2R + C + T - 2 cycles; an output-stationary fold streams both operands at once:
R + C + T - 2. SCALE-Sim reports the index of the last cycle, one less than the count, and
so does this model: its numbers equal SCALE-Sim's "Total Cycles" for one array with ample
SRAM (tests/simulator/test_scalesim.py). A fold is charged the whole array even when the
edge fold uses part of it — the tile-edge waste architects see on shapes that do not divide.
"""

from __future__ import annotations

from enum import StrEnum


class Dataflow(StrEnum):
    WS = "ws"
    OS = "os"
    IS = "is"


def _spatial(m: int, k: int, n: int, dataflow: Dataflow) -> tuple[int, int, int]:
    if dataflow is Dataflow.OS:
        return m, n, k
    if dataflow is Dataflow.WS:
        return k, n, m
    return k, m, n


def matmul_folds(m: int, k: int, n: int, rows: int, cols: int, dataflow: Dataflow) -> int:
    sr, sc, _ = _spatial(m, k, n, Dataflow(dataflow))
    return -(-sr // rows) * -(-sc // cols)


def fold_overhead(rows: int, cols: int, dataflow: Dataflow) -> int:
    """Fill and drain cycles of one fold beyond its T streaming cycles."""
    preload = 0 if Dataflow(dataflow) is Dataflow.OS else rows
    return preload + rows + cols - 2


def matmul_cycles(m: int, k: int, n: int, rows: int, cols: int, dataflow: Dataflow) -> int:
    """Compute cycles of one matmul on one array, as SCALE-Sim counts them:
    folds x (T + fill/drain) - 1."""
    for name, v in (("m", m), ("k", k), ("n", n), ("rows", rows), ("cols", cols)):
        if v <= 0:
            raise ValueError(f"matmul_cycles: {name} must be positive, got {v}")
    df = Dataflow(dataflow)
    sr, sc, t = _spatial(m, k, n, df)
    folds = -(-sr // rows) * -(-sc // cols)
    return folds * (t + fold_overhead(rows, cols, df)) - 1


def pipelined_cycles(m: int, k: int, n: int, rows: int, cols: int, dataflow: Dataflow) -> int:
    """Folds overlapped: double-buffered weights / outputs let fold i+1 load while fold i
    streams (TPUv1's weight FIFO), so a fold costs max(T, R) cycles and the array fills and
    drains once per instruction: folds x max(T, R) + fill/drain - 1."""
    df = Dataflow(dataflow)
    sr, sc, t = _spatial(m, k, n, df)
    folds = -(-sr // rows) * -(-sc // cols)
    return folds * max(t, rows) + fold_overhead(rows, cols, df) - 1


def utilization(m: int, k: int, n: int, rows: int, cols: int, dataflow: Dataflow) -> float:
    """Useful MACs / (PEs x cycles): below 1 from fill/drain and ragged edge folds."""
    return m * k * n / (rows * cols * matmul_cycles(m, k, n, rows, cols, dataflow))
