"""Performance mode against hand calculations on the round-number chip of conftest.py.

Chip: 1 GHz, 16x16 WS array, 100 GB/s HBM at efficiency 1, DMA latency 100 ns, 64 B bursts.
"""

from __future__ import annotations

import dataclasses

import pytest

from hardware.chip import Dataflow, DmaConfig, PowerConfig
from isa import DType, MemRef, Program, Space, build
from simulator.engine.machine import RunLimits
from simulator.engine.systolic import matmul_cycles
from simulator.errors import BudgetError, DeadlockError, SimError
from simulator.run import simulate
from tests.simulator.conftest import make_chip

S, H, A = Space.SRAM, Space.HBM, Space.ACC
LOAD_64x64 = 100 + 8192 / 100  # ns: latency + 8 KiB at 100 B/ns
MM_64 = 16 * (2 * 16 + 16 + 64 - 2) - 1  # 4x4 folds of 2R + C + T - 2 (WS), SCALE-Sim -1


def load(dst=0, src=0, rows=64, cols=64, **kw):
    return build("dma.load", MemRef(S, dst), MemRef(H, src), DType.BF16, rows, cols, **kw)


def mm(a=0, w=0x4000, m=64, k=64, n=64, adt="bf16", wdt="bf16", flags=0):
    return build("mm", MemRef(A, 0), MemRef(S, a), MemRef(S, w), m, k, n, adt, wdt, flags)


def prog(*ins) -> Program:
    return Program(tuple(ins))


@pytest.mark.parametrize("dataflow", list(Dataflow))
@pytest.mark.parametrize("m,k,n", [(64, 64, 64), (100, 70, 33), (1, 300, 17), (16, 16, 16)])
def test_matmul_time_is_the_systolic_model(dataflow, m, k, n):
    chip = make_chip(dataflow)
    r = simulate(prog(mm(m=m, k=k, n=n)), chip)
    assert r.cycles == pytest.approx(matmul_cycles(m, k, n, 16, 16, dataflow))


def test_matmul_ws_by_hand(chip):
    assert simulate(prog(mm()), chip).cycles == pytest.approx(MM_64)


def test_int8_packs_two_macs_per_pe_and_sparsity_halves_k(chip):
    dense = simulate(prog(mm(adt="int8", wdt="int8")), chip).cycles
    assert dense == pytest.approx(matmul_cycles(64, 32, 64, 16, 16, Dataflow.WS))
    sparse = simulate(prog(mm(adt="int8", wdt="int8", flags="sp24")), chip).cycles
    assert sparse == pytest.approx(matmul_cycles(64, 16, 64, 16, 16, Dataflow.WS))


def test_unsupported_dtype_is_a_clear_error(chip):
    with pytest.raises(SimError, match="no int4 MACs"):
        simulate(prog(mm(adt="int4", wdt="int4")), chip)


def test_dma_at_full_bandwidth(chip):
    assert simulate(prog(load()), chip).time_s * 1e9 == pytest.approx(LOAD_64x64)


def test_two_concurrent_dmas_share_hbm(chip):
    chip2 = dataclasses.replace(chip, cores=2)
    r = simulate({0: prog(load()), 1: prog(load())}, chip2)
    assert r.time_s * 1e9 == pytest.approx(100 + 2 * 8192 / 100)


def test_per_core_dma_cap_limits_the_share(chip):
    capped = dataclasses.replace(chip, cores=2, core=dataclasses.replace(
        chip.core, dma=DmaConfig(latency=100e-9, max_bandwidth=40e9)))
    r = simulate({0: prog(load()), 1: prog(load(cols=32))}, capped)
    # core 1 moves 4 KiB and finishes first (both at 40 B/ns); core 0 then runs alone at 40
    assert r.time_s * 1e9 == pytest.approx(100 + 8192 / 40)


def test_a_kernels_window_bounds_each_cores_hbm_rate_by_littles_law(chip):
    """``window`` (KiB in flight) / DMA latency is the most a load's HBM part moves at, per
    core: two cores with 2 KiB windows each get 20.48 B/ns of the 100 B/ns HBM, not 50."""
    chip2 = dataclasses.replace(chip, cores=2)
    r = simulate({0: prog(load(window=2)), 1: prog(load(window=2))}, chip2)
    assert r.time_s * 1e9 == pytest.approx(100 + 8192 / (2048 / 100))
    wide = simulate({0: prog(load(window=64)), 1: prog(load(window=64))}, chip2)
    assert wide.time_s * 1e9 == pytest.approx(100 + 2 * 8192 / 100)  # the HBM binds


def test_staggered_flows_share_only_while_overlapping(chip):
    chip2 = dataclasses.replace(chip, cores=2)
    late = prog(build("v.relu", MemRef(S, 0x8000), MemRef(S, 0x8000), 1, 16 * 42, "bf16",
                      "bf16"), build("sem.signal", "vec", 0), build("sem.wait", "dma", 0), load())
    r = simulate({0: prog(load()), 1: late}, chip2)
    # core 1 issues at t0 = 8 + 42 = 50 ns, its bytes start at 150 ns; core 0's bytes run
    # 100..181.92 alone until 150 (5000 B left -> 3192 B), then both at 50 B/ns.
    t_core0_done = 150 + 3192 / 50
    left = 8192 - (t_core0_done - 150) * 50
    assert r.time_s * 1e9 == pytest.approx(t_core0_done + left / 100)


def test_short_rows_are_charged_whole_bursts(chip):
    r = simulate(prog(load(rows=64, cols=16, stride=4096)), chip)  # 32 B rows -> 64 B bursts
    assert r.bytes["hbm_read"] == 64 * 64
    assert r.time_s * 1e9 == pytest.approx(100 + 64 * 64 / 100)


def double_buffered(n_tiles: int) -> Program:
    """Tiles alternate between two SRAM buffers; semaphores 1/2 free, 3/4 full."""
    tile = 8192
    body = [
        build("sem.wait", "dma", 1), load(0, 0), build("sem.signal", "dma", 3),
        build("sem.wait", "dma", 2), load(0x2000, tile), build("sem.signal", "dma", 4),
        build("sem.wait", "mx", 3), mm(a=0), build("sem.signal", "mx", 1),
        build("sem.wait", "mx", 4), mm(a=0x2000), build("sem.signal", "mx", 2),
    ]
    head = [build("sem.signal", "mx", 1), build("sem.signal", "mx", 2),
            build("loop", n_tiles // 2, 3 + len(body), "a0", 2 * tile)]
    return prog(*head, *body, build("halt"))


def test_double_buffering_overlaps_dma_with_compute(chip):
    n = 8
    r = simulate(double_buffered(n), chip)
    assert r.time_s * 1e9 == pytest.approx(LOAD_64x64 + n * MM_64)
    serial = simulate(prog(*[x for _ in range(n) for x in (load(), build("sem.signal", "dma", 0),
                                                           build("sem.wait", "mx", 0), mm(),
                                                           build("sem.signal", "mx", 1),
                                                           build("sem.wait", "dma", 1))]), chip)
    assert serial.time_s * 1e9 == pytest.approx(n * (LOAD_64x64 + MM_64))
    assert r.engines["dma"].instructions == n and r.engines["mx"].instructions == n


def test_energy_of_a_small_program_by_hand(chip):
    r = simulate(prog(load(), build("sem.signal", "dma", 0), build("sem.wait", "mx", 0), mm()),
                 chip)
    t = (LOAD_64x64 + MM_64) * 1e-9
    assert r.time_s == pytest.approx(t)
    pj = 1e-12
    assert r.energy_j["compute"] == pytest.approx(64 ** 3 * 0.5 * pj)
    assert r.energy_j["hbm"] == pytest.approx(8192 * 5.0 * pj)
    # SRAM: DMA writes 8 KiB; mm reads a (8 KiB) and w (8 KiB). Accumulator: 16 KiB written.
    assert r.energy_j["sram"] == pytest.approx(3 * 8192 * 0.1 * pj)
    assert r.energy_j["accumulator"] == pytest.approx(64 * 64 * 4 * 0.1 * pj)
    assert r.energy_j["static"] == pytest.approx(1.0 * t)


def test_power_cap_lowers_the_clock_of_a_compute_bound_program(chip):
    program = prog(build("loop", 50, 2), mm(), build("halt"))
    free = simulate(program, chip)
    dyn = free.avg_power_w - 1.0
    capped_chip = dataclasses.replace(chip, power=PowerConfig(tdp_w=1.0 + dyn / 2,
                                                              dvfs_exponent=2.0))
    r = simulate(program, capped_chip)
    assert r.power_capped and r.clock_hz < chip.clock_hz
    # compute-bound: dynamic power ~ f^2, so halving it needs f = f0 / sqrt(2)
    assert r.clock_hz == pytest.approx(chip.clock_hz / 2 ** 0.5, rel=1e-3)
    assert r.avg_power_w == pytest.approx(1.0 + dyn / 2, rel=1e-3)
    assert r.time_s == pytest.approx(free.time_s * 2 ** 0.5, rel=1e-3)


def test_power_cap_leaves_a_cool_program_alone(chip):
    cool = dataclasses.replace(chip, power=PowerConfig(tdp_w=100.0))
    r = simulate(prog(mm()), cool)
    assert not r.power_capped and r.clock_hz == chip.clock_hz


def test_deadlock_names_the_blocked_instruction(chip):
    with pytest.raises(DeadlockError, match=r"pc 1 \(sem.wait\) on mx: waits for semaphore 7"):
        simulate(prog(load(), build("sem.wait", "mx", 7), mm()), chip)


def test_runaway_loop_hits_the_instruction_budget(chip):
    program = prog(build("loop", 1 << 30, 2), mm())
    with pytest.raises(BudgetError, match="instruction budget of 1,000"):
        simulate(program, chip, limits=RunLimits(max_instructions=1000))


def test_loops_are_not_unrolled_and_count_dynamic_instructions(chip):
    program = prog(build("loop", 10, 3), build("loop", 10, 3), mm(m=1, k=16, n=16))
    r = simulate(program, chip)
    assert r.engines["mx"].instructions == 100
    assert r.cycles == pytest.approx(100 * matmul_cycles(1, 16, 16, 16, 16, Dataflow.WS))


def test_trace_rows_and_chrome_export(chip):
    r = simulate(prog(load(), build("sem.signal", "dma", 0), build("sem.wait", "mx", 0), mm()),
                 chip, trace=True)
    df = r.trace_frame()
    assert list(df["mnemonic"]) == ["dma.load", "mm"]
    # the DMA row is its bandwidth phase; the matmul waits for the 100 ns latency tail too
    assert df["dur_s"].iloc[0] == pytest.approx(8192 / 100e9)
    assert df["start_s"].iloc[1] == pytest.approx(df["dur_s"].iloc[0] + 100e-9)
    events = [e for e in r.chrome_trace()["traceEvents"] if e["ph"] == "X"]
    assert [e["name"] for e in events] == ["dma.load", "mm"]
    assert events[1]["ts"] == pytest.approx(LOAD_64x64 / 1000)


def test_dma_latency_overlaps_between_loads(chip):
    """Back-to-back loads pay the latency once: it is a pipeline tail, not per DMA."""
    r = simulate(prog(load(), load(src=8192), load(src=16384)), chip)
    assert r.time_s * 1e9 == pytest.approx(3 * 8192 / 100 + 100)


def test_out_of_range_sram_is_refused_before_the_run_in_performance_mode(chip):
    with pytest.raises(SimError, match=r"pc 0 \(dma.load\): operand 'dst' reaches sram "
                                       r"\[0xff000, 0x101000\)"):
        simulate(prog(load(dst=(1 << 20) - 4096)), chip)


def test_register_ranges_of_loops_are_bounded(chip):
    # 16 iterations of 8 KiB steps from 0x80000: the last tile ends at 0x80000 + 16 * 8 KiB
    # = 0xa0000, inside the 1 MiB SRAM; 80 iterations would not fit
    ok = prog(build("loop", 16, 2, "a1", 8192),
              build("dma.load", MemRef(S, 0x80000, 1), MemRef(H, 0), DType.BF16, 64, 64))
    simulate(ok, chip)
    bad = prog(build("loop", 80, 2, "a1", 8192),
               build("dma.load", MemRef(S, 0x80000, 1), MemRef(H, 0), DType.BF16, 64, 64))
    with pytest.raises(SimError, match=r"with a1 in 0..647168"):
        simulate(bad, chip)


def test_loops_that_do_not_nest_are_refused_before_the_run(chip):
    """An inner loop whose body runs past its enclosing loop's end: named, up front."""
    ld = build("dma.load", MemRef(S, 0, 1), MemRef(H, 0), DType.BF16, 64, 64)
    bad = prog(build("loop", 2, 3, "a1", 8192), build("loop", 2, 4), ld, ld)
    with pytest.raises(SimError, match=r"pc 1: loop end 4 is not inside the enclosing block"):
        simulate(bad, chip)


def test_accumulator_bound(chip):
    simulate(prog(mm(m=256, n=256)), chip)  # a 256 KiB fp32 tile fills the 256 KiB exactly
    with pytest.raises(SimError, match=r"operand 'dst' reaches acc \[0x0, 0x80000\)"):
        simulate(prog(mm(m=256, n=512)), chip)
