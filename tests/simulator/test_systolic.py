"""The systolic-array timing model (simulator/engine/systolic.py) against SCALE-Sim and by hand.

(a) Every row of tests/simulator/scalesim_golden.py -- SCALE-Sim 3.0.0's "Total Cycles" of
    COMPUTE_REPORT.csv, ample SRAM, no stalls -- equals ``matmul_cycles`` exactly. There is no
    offset to apply: SCALE-Sim reports the 0-based index of the last busy cycle (one less than
    the number of busy cycles), and ``matmul_cycles`` returns the same number by design.
(b) Hand calculations, spelled out below.
(c) Hypothesis properties: monotone in m, k, n; an array-sized GEMM is one fold;
    utilization <= 1.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.engine.systolic import (
    Dataflow,
    fold_overhead,
    matmul_cycles,
    matmul_folds,
    utilization,
)
from tests.simulator.scalesim_golden import GOLDEN


@pytest.mark.parametrize("m,k,n,rows,cols,dataflow,cycles", GOLDEN,
                         ids=[f"{g[5]}-{g[0]}x{g[1]}x{g[2]}-on-{g[3]}x{g[4]}" for g in GOLDEN])
def test_matmul_cycles_equal_scalesim(m, k, n, rows, cols, dataflow, cycles):
    assert matmul_cycles(m, k, n, rows, cols, Dataflow(dataflow)) == cycles
    assert matmul_cycles(m, k, n, rows, cols, dataflow) == cycles  # plain strings work too


def test_golden_covers_every_dataflow_and_ragged_shapes():
    assert {g[5] for g in GOLDEN} == {"ws", "os", "is"}
    assert any(g[3] != g[4] for g in GOLDEN)  # a non-square array
    assert any(g[0] % g[3] and g[1] % g[3] and g[2] % g[4] for g in GOLDEN)  # nothing divides


def test_one_fold_on_a_4x4_array_by_hand():
    # WS, 4x4x4 GEMM on 4x4 PEs: Sr = K = 4, Sc = N = 4 -> one fold, T = M = 4.
    #   preload the 4x4 weights:                      R         = 4 cycles
    #   stream 4 input rows, skewed over the 4 rows:  T + R - 1 = 7
    #   drain the last partial sum across 4 columns:  C - 1     = 3
    #   busy cycles 14 = 2R + C + T - 2; SCALE-Sim reports the last index, 13
    assert matmul_folds(4, 4, 4, 4, 4, Dataflow.WS) == 1
    assert matmul_cycles(4, 4, 4, 4, 4, Dataflow.WS) == 13
    # IS is WS with A in place of W: Sr = K, Sc = M, T = N -> also 14 busy, 13 reported
    assert matmul_cycles(4, 4, 4, 4, 4, Dataflow.IS) == 13
    # OS: no preload; A and W stream in together, skewed, T = K = 4:
    #   R + C + T - 2 = 4 + 4 + 4 - 2 = 10 busy cycles, reported 9
    assert matmul_cycles(4, 4, 4, 4, 4, Dataflow.OS) == 9


def test_ragged_folds_by_hand():
    # 100x70x33 on 32x32, WS: Sr = K = 70 -> ceil(70/32) = 3 row folds, Sc = N = 33 -> 2
    # column folds; 6 folds of T + 2R + C - 2 = 100 + 64 + 32 - 2 = 194 -> 1164 - 1 = 1163
    assert matmul_folds(100, 70, 33, 32, 32, Dataflow.WS) == 6
    assert matmul_cycles(100, 70, 33, 32, 32, Dataflow.WS) == 6 * 194 - 1
    # OS: Sr = M = 100 -> 4, Sc = N = 33 -> 2: 8 folds of K + R + C - 2 = 70 + 62 = 132
    assert matmul_folds(100, 70, 33, 32, 32, Dataflow.OS) == 8
    assert matmul_cycles(100, 70, 33, 32, 32, Dataflow.OS) == 8 * 132 - 1
    # IS: Sr = K = 70 -> 3, Sc = M = 100 -> 4: 12 folds of N + 2R + C - 2 = 33 + 94 = 127
    assert matmul_folds(100, 70, 33, 32, 32, Dataflow.IS) == 12
    assert matmul_cycles(100, 70, 33, 32, 32, Dataflow.IS) == 12 * 127 - 1
    # a non-square 32x8 array, WS, 48x40x24: ceil(40/32) * ceil(24/8) = 2 * 3 = 6 folds of
    # 48 + 64 + 8 - 2 = 118 -> 707
    assert matmul_cycles(48, 40, 24, 32, 8, Dataflow.WS) == 6 * 118 - 1


def test_fold_overhead():
    assert fold_overhead(4, 4, Dataflow.WS) == 10  # 2R + C - 2
    assert fold_overhead(4, 4, Dataflow.IS) == 10
    assert fold_overhead(4, 4, Dataflow.OS) == 6   # R + C - 2
    assert fold_overhead(32, 8, Dataflow.WS) == 70


@pytest.mark.parametrize("args", [
    (0, 1, 1, 4, 4), (1, -1, 1, 4, 4), (1, 1, 0, 4, 4), (1, 1, 1, 0, 4), (1, 1, 1, 4, -2),
    (1.5, 1, 1, 4, 4), (True, 1, 1, 4, 4), ("8", 1, 1, 4, 4), (None, 1, 1, 4, 4),
])
def test_bad_sizes_raise_value_error(args):
    for fn in (matmul_cycles, matmul_folds, utilization):
        with pytest.raises(ValueError, match="must be a positive int"):
            fn(*args, Dataflow.WS)


def test_bad_dataflow_raises_value_error():
    for fn in (matmul_cycles, matmul_folds, utilization):
        with pytest.raises(ValueError, match="dataflow must be one of"):
            fn(4, 4, 4, 4, 4, "rs")


def test_numpy_integers_are_accepted():
    np = pytest.importorskip("numpy")
    assert matmul_cycles(np.int64(4), 4, np.int32(4), 4, 4, Dataflow.WS) == 13


dims = st.integers(1, 600)
arrays = st.sampled_from([1, 2, 3, 4, 8, 16, 32, 128]) | st.integers(1, 64)
flows = st.sampled_from(list(Dataflow))


@settings(max_examples=400, deadline=None)
@given(dims, dims, dims, arrays, arrays, flows, st.sampled_from([0, 1, 2]),
       st.integers(1, 100))
def test_cycles_monotone_in_m_k_n(m, k, n, rows, cols, df, axis, grow):
    base = [m, k, n]
    bigger = list(base)
    bigger[axis] += grow
    assert matmul_cycles(*bigger, rows, cols, df) >= matmul_cycles(*base, rows, cols, df)


@settings(max_examples=200, deadline=None)
@given(arrays, arrays, st.integers(1, 600), flows)
def test_array_sized_gemm_is_one_fold(rows, cols, t, df):
    # the two spatial dims fill the array exactly; the temporal one is free
    m, k, n = {Dataflow.WS: (t, rows, cols), Dataflow.OS: (rows, t, cols),
               Dataflow.IS: (cols, rows, t)}[df]
    assert matmul_folds(m, k, n, rows, cols, df) == 1
    assert matmul_cycles(m, k, n, rows, cols, df) == t + fold_overhead(rows, cols, df) - 1


@settings(max_examples=400, deadline=None)
@given(dims, dims, dims, arrays, arrays, flows)
def test_utilization_at_most_one(m, k, n, rows, cols, df):
    u = utilization(m, k, n, rows, cols, df)
    assert 0.0 < u <= 1.0
    # and the folds really do hold every MAC: folds * R * C * T >= M * K * N
    t = {Dataflow.WS: m, Dataflow.OS: k, Dataflow.IS: n}[df]
    assert matmul_folds(m, k, n, rows, cols, df) * rows * cols * t >= m * k * n
