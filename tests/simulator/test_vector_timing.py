"""Deferred completion signals (DMA and vector tails), chained matmuls, vector row passes.

Chip: conftest.py's (1 GHz so 1 cycle = 1 ns, 16x16 WS array, 16 vector lanes with an
8-cycle pipeline, 100 GB/s HBM, DMA latency 100 ns).
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hardware.chip import Dataflow
from isa import DType, Instruction, MemRef, Program, Space, build
from simulator.engine.machine import RunLimits
from simulator.engine.systolic import fold_overhead, matmul_cycles
from simulator.engine.timing import mm_cycles, vector_cycles
from simulator.errors import BudgetError
from simulator.run import simulate
from tests.simulator.conftest import make_chip

S, H, A = Space.SRAM, Space.HBM, Space.ACC
BYTES_NS = 8192 / 100  # a 64x64 bf16 tile at 100 B/ns
LAT = 100  # ns of DMA latency


def load(src=0, dst=0):
    return build("dma.load", MemRef(S, dst), MemRef(H, src), DType.BF16, 64, 64)


def mm(m=64, k=64, n=64, flags=0):
    return build("mm", MemRef(A, 0), MemRef(S, 0), MemRef(S, 0x4000), m, k, n, "bf16",
                 "bf16", flags)


def relu(cols=16 * 42):
    # 1 row of 672 elements: 8 pipeline + 672 / 16 lanes = 50 cycles
    return build("v.relu", MemRef(S, 0x8000), MemRef(S, 0x8000), 1, cols, "bf16", "bf16")


def prog(*ins) -> Program:
    return Program(tuple(ins))


def starts(result) -> list[tuple[str, float]]:
    df = result.trace_frame()
    return [(m, s * 1e9) for m, s in zip(df["mnemonic"], df["start_s"])]


def with_vector(chip, **kw):
    return dataclasses.replace(chip, core=dataclasses.replace(
        chip.core, vector=dataclasses.replace(chip.core.vector, **kw)))


def with_array(chip, **kw):
    return dataclasses.replace(chip, core=dataclasses.replace(
        chip.core, array=dataclasses.replace(chip.core.array, **kw)))


# ---- deferred DMA signal --------------------------------------------------------------------

def test_dma_signal_fires_when_the_bytes_have_landed_without_holding_the_dma(chip):
    p = prog(load(), build("sem.signal", "dma", 0), load(src=8192, dst=0x2000),
             build("sem.wait", "mx", 0), mm())
    r = simulate(p, chip, trace=True)
    got = dict(starts(r))
    # the matrix engine waits for latency + bytes / bandwidth = 100 + 81.92 ns, not less
    assert got["mm"] == pytest.approx(LAT + BYTES_NS)
    # the second load goes on right after the first one's bytes, not after its latency
    loads = [s for m, s in starts(r) if m == "dma.load"]
    assert loads == pytest.approx([0.0, BYTES_NS])
    mm_end = LAT + BYTES_NS + matmul_cycles(64, 64, 64, 16, 16, Dataflow.WS)
    assert r.time_s * 1e9 == pytest.approx(max(mm_end, 2 * BYTES_NS + LAT))


def test_dma_signal_waits_for_the_last_load_before_it(chip):
    # two loads, then the signal: the array starts after both land (2 x 81.92 + 100 ns)
    p = prog(load(), load(src=8192, dst=0x2000), build("sem.signal", "dma", 0),
             build("sem.wait", "mx", 0), mm())
    assert dict(starts(simulate(p, chip, trace=True)))["mm"] == pytest.approx(
        2 * BYTES_NS + LAT)


def test_signal_without_work_in_flight_fires_at_once(chip):
    p = prog(build("sem.signal", "dma", 0), build("sem.wait", "mx", 0), mm())
    assert dict(starts(simulate(p, chip, trace=True)))["mm"] == 0.0


# ---- vector latency tail --------------------------------------------------------------------

def test_vector_signal_fires_after_the_latency_tail(chip):
    tail = with_vector(chip, latency_cycles={"simple": 30.0})
    p = prog(relu(), build("sem.signal", "vec", 0), build("sem.wait", "mx", 0), mm())
    assert dict(starts(simulate(p, chip, trace=True)))["mm"] == pytest.approx(50)
    # busy 50 cycles, result ready 30 cycles later: the array starts at 80 ns
    assert dict(starts(simulate(p, tail, trace=True)))["mm"] == pytest.approx(80)


def test_independent_vector_ops_back_to_back_pay_busy_time_only(chip):
    tail = with_vector(chip, latency_cycles={"simple": 30.0})
    r = simulate(prog(relu(), relu()), tail, trace=True)
    assert [s for _, s in starts(r)] == pytest.approx([0.0, 50.0])
    assert r.engines["vec"].busy_s == pytest.approx(100e-9)
    # the program ends when the last result is ready: 2 x 50 + 30
    assert r.time_s * 1e9 == pytest.approx(130)


def test_semaphore_ops_count_against_the_instruction_budget(chip):
    spin = prog(build("loop", 1 << 30, 3), build("sem.signal", "vec", 0),
                build("sem.wait", "vec", 0))
    with pytest.raises(BudgetError, match="instruction budget of 1,000"):
        simulate(spin, chip, limits=RunLimits(max_instructions=1000))


# ---- chained matmuls ------------------------------------------------------------------------

@pytest.mark.parametrize("dataflow", list(Dataflow))
def test_chained_mm_on_a_pipelined_array_pays_no_fill_and_drain(dataflow):
    chip = make_chip(dataflow)
    piped = with_array(chip, pipelined_folds=True)
    m, k, n = 64, 48, 40
    sr, sc, t = {"ws": (k, n, m), "os": (m, n, k), "is": (k, m, n)}[dataflow.value]
    folds = -(-sr // 16) * -(-sc // 16)
    # WS: 3 x 3 folds of max(T=64, R=16) = 576 cycles chained; the first of a chain fills
    # and drains once more: + (2R + C - 2) - 1 = + 45
    chained = folds * max(t, 16)
    assert mm_cycles(m, k, n, DType.BF16, False, piped, chained=True) == chained
    assert mm_cycles(m, k, n, DType.BF16, False, piped) == chained + fold_overhead(
        16, 16, dataflow) - 1
    # SCALE-Sim's array does not overlap folds: chaining changes nothing
    assert mm_cycles(m, k, n, DType.BF16, False, chip, chained=True) == matmul_cycles(
        m, k, n, 16, 16, dataflow)


def test_chained_ws_mm_by_hand():
    piped = with_array(make_chip(), pipelined_folds=True)
    # 64x64x64 WS: 16 folds x 64 = 1024; the head of the chain adds 2*16 + 16 - 2 - 1 = 45
    assert mm_cycles(64, 64, 64, DType.BF16, False, piped, chained=True) == 1024
    assert mm_cycles(64, 64, 64, DType.BF16, False, piped) == 1069
    over = with_array(piped, tile_overhead_cycles=7)
    assert mm_cycles(64, 64, 64, DType.BF16, False, over, chained=True) == 1031


def test_an_accumulating_chain_runs_at_the_streaming_rate():
    piped = with_array(make_chip(), pipelined_folds=True)
    chain = prog(mm(), mm(flags="accum"), mm(flags="accum"), mm(flags="accum"))
    # the first mm fills and drains (1069 cycles), the three that accumulate stream (1024)
    assert simulate(chain, piped).cycles == pytest.approx(1069 + 3 * 1024)
    fresh = prog(*[mm()] * 4)
    assert simulate(fresh, piped).cycles == pytest.approx(4 * 1069)


# ---- vector passes --------------------------------------------------------------------------

@pytest.mark.parametrize("cls,passes", [("softmax", 1), ("norm", 2), ("simple", 1),
                                        ("reduce", 1)])
def test_rows_wider_than_the_registers_take_extra_passes(cls, passes):
    chip = with_vector(make_chip(), row_elems=64, row_cycles={cls: 2.0})
    op = chip.core.vector.op_cycles[cls]
    fixed = 8 + 4 * 2.0  # pipeline + rows x row cycles: never repeated
    # 4 rows of 64 fit the registers: 256 / 16 lanes x op cycles once
    assert vector_cycles(cls, 4, 64, chip) == pytest.approx(fixed + 16 * op)
    # 4 rows of 128 do not: 512 / 16 lanes x op cycles, once per pass
    assert vector_cycles(cls, 4, 128, chip) == pytest.approx(fixed + passes * 32 * op)


def test_softmax_by_hand():
    chip = with_vector(make_chip(), row_elems=64)
    # softmax 6 cycles per element-lane: 8 + ceil(4*64/16) * 6 = 104; a wider row staged in
    # SRAM is one pass too (its re-reads of SRAM are in the per-element cost)
    assert vector_cycles("softmax", 4, 64, chip) == 104
    assert vector_cycles("softmax", 4, 65, chip) == 8 + 17 * 6
    # row_elems 0: any row fits
    assert vector_cycles("softmax", 4, 4096, make_chip()) == 8 + 1024 * 6


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 64), st.integers(1, 4096), st.integers(1, 512))
def test_passes_never_make_a_row_cheaper(rows, cols, row_elems):
    wide = with_vector(make_chip(), row_elems=row_elems)
    for cls in ("softmax", "norm", "simple"):
        assert vector_cycles(cls, rows, cols, wide) >= vector_cycles(cls, rows, cols,
                                                                     make_chip())


def test_a_simulated_softmax_costs_its_cycles():
    chip = with_vector(make_chip(), row_elems=64)
    ins = build("v.softmax", MemRef(S, 0), MemRef(S, 0x10000), 4, 128, "bf16", "bf16")
    assert simulate(prog(ins), chip).cycles == pytest.approx(8 + 32 * 6)


# ---- warp-per-row ops -------------------------------------------------------------------

def warp_chip():
    """16 lanes in two groups of 8; a group issues every cycle with 3 rows in flight."""
    return with_vector(make_chip(), group_lanes=8, issue_rows=3.0,
                       warp_op_cycles={"softmax": 6.0}, warp_row_cycles={"softmax": 10.0})


def warp_softmax(rows: int, cols: int):
    return build("v.softmax", MemRef(S, 0), MemRef(S, 0x10000), rows, cols, "bf16", "bf16",
                 "warp")


def test_a_lone_row_waits_on_its_own_latency():
    # one row: w = ceil(64 / 8) * 6 + 10 = 58 cycles of its group's issue, and the group
    # issues a lone row's instructions only every 3 cycles: ready at 8 + 3 * 58
    assert simulate(prog(warp_softmax(1, 64)), warp_chip()).cycles == pytest.approx(8 + 174)
    # a 1024-lane row would be 64 x 6: the group's lanes, not the engine's, set its time
    assert simulate(prog(warp_softmax(1, 64)), warp_chip()).cycles > \
        simulate(prog(build("v.softmax", MemRef(S, 0), MemRef(S, 0x10000), 1, 64, "bf16",
                            "bf16")), with_vector(warp_chip(), latency_cycles={})).cycles


def test_enough_rows_issue_at_the_engine_rate():
    # 12 rows on 2 groups: 6 each, more than the 3 that hide the latency: 8 + 6 * 58
    assert simulate(prog(warp_softmax(12, 64)), warp_chip()).cycles == pytest.approx(8 + 348)
    # rows in one instruction overlap; the same rows one by one only partly (the engine is
    # busy a group's share of each, then waits on the last one's latency)
    apart = simulate(prog(*[warp_softmax(1, 64)] * 12), warp_chip()).cycles
    assert 8 + 348 < apart <= 12 * (8 + 29) + 174


def test_without_lane_groups_the_warp_flag_changes_nothing():
    chip = make_chip()
    plain = build("v.softmax", MemRef(S, 0), MemRef(S, 0x10000), 4, 64, "bf16", "bf16")
    assert simulate(prog(warp_softmax(4, 64)), chip).cycles == \
        simulate(prog(plain), chip).cycles


def test_welford_is_a_block_per_row():
    """A LayerNorm's statistics as PyTorch gathers them: a row per block with one warp on
    every lane group, so a lone row is latency-bound and four rows are not."""
    chip = with_vector(warp_chip(), op_cycles={"welford": 4.0}, row_cycles={"welford": 2.0})

    def welford(rows: int) -> Instruction:
        return build("v.welford", MemRef(S, 0), MemRef(S, 0x10000), rows, 64, "fp32", "bf16",
                     8)
    # a warp's share: ceil(64 / 16) x 4 + 2 = 18 cycles; a lone one issues every third cycle
    assert simulate(prog(welford(1)), chip).cycles == pytest.approx(8 + 3 * 18)
    assert simulate(prog(welford(4)), chip).cycles == pytest.approx(8 + 4 * 18)


def test_an_rmsnorm_pays_half_a_layernorms_row_cost_and_latency():
    """One block reduction (the mean of squares) against LayerNorm's two: the norm class's
    per-row cycles and result latency are a LayerNorm's, an RMSNorm pays half of each;
    the per-element cost is the same."""
    from simulator.engine.timing import vector_cost

    chip = make_chip()
    v = dataclasses.replace(chip.core.vector, op_cycles={**chip.core.vector.op_cycles,
                                                         "norm": 4.0},
                            row_cycles={"norm": 300.0}, latency_cycles={"norm": 1000.0})
    chip = dataclasses.replace(chip, core=dataclasses.replace(chip.core, vector=v))

    def cost(mn: str):
        return vector_cost(build(mn, MemRef(S, 0), MemRef(S, 0x8000), MemRef(S, 0x10000),
                                 8, 256, "bf16", "bf16", 1e-5), chip)
    ln, rms = cost("v.layernorm"), cost("v.rmsnorm")
    ns = 1e9 / chip.clock_hz
    assert ln.ns - rms.ns == pytest.approx(8 * 150.0 * ns)
    assert rms.tail_ns == pytest.approx(ln.tail_ns / 2) and ln.tail_ns == pytest.approx(1000 * ns)
