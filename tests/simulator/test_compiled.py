"""The compiled event core gives the SimPy engine's results: same time, counts, bytes,
energy and busy times, on every kernel kind, and the same errors."""

from __future__ import annotations

import contextlib
import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from experiments import measured_work as mw
from hardware.chip import PowerConfig
from hardware.system import LinkConfig, SystemConfig
from hardware.topology import Topology
from isa import build
from isa.program import Program
from mapper.emit import acc, hbm, sram
from mapper.layers import Phase
from mapper.lower import lower
from mapper.model import load_model
from mapper.parallel import Parallel, map_system
from mapper.pipeline import MapOptions, map_model
from simulator.engine import compiled
from simulator.engine.machine import Machine, RunLimits
from simulator.errors import BudgetError, DeadlockError
from simulator.run import simulate, simulate_system
from tests.simulator.conftest import assert_same_result, make_chip

pytestmark = pytest.mark.skipif(not compiled.AVAILABLE, reason="the compiled core is not built")

SIMPY = RunLimits(steady_state=False, compiled=False)
FAST = RunLimits()


def same(ref, got) -> None:
    """Every figure equal to float rounding (the two engines do the same arithmetic in the
    same order; what differs is only Python's and C's summation of the same terms)."""
    assert_same_result(ref, got, rel=1e-12, busy_rel=1e-12, busy_abs=1e-18)


def both(kernels, chip) -> int:
    """Each kernel both ways; how many ran compiled."""
    ran = 0
    for progs in kernels:
        m = Machine([chip], {(0, c): p for c, p in progs.items()}, limits=FAST)
        ran += compiled.usable(m)
        same(simulate(progs, chip, limits=SIMPY, _store=False),
             simulate(progs, chip, limits=FAST, _store=False))
    return ran


@pytest.mark.parametrize("m,k,n,cores", [
    (64, 1024, 64, 4),  # one class of cores, a long K loop
    (100, 640, 70, 3),  # ragged edges: three classes of cores
    (16, 512, 80, 4),  # five tiles on four cores: a second wave
])
def test_gemm(m, k, n, cores):
    chip = make_chip(cores=cores)
    kernels = lower(mw.gemm_graph("bf16", m, k, n), chip).kernel_programs
    assert both(kernels, chip) == len(kernels)


@pytest.mark.parametrize("op", ["rmsnorm", "add", "softmax"])
def test_rowwise(op):
    chip = make_chip(cores=4)
    assert both(lower(mw.rows_graph(op, 300, 192), chip).kernel_programs, chip)


@pytest.mark.parametrize("b,hq,hkv,sq,skv,causal", [
    (1, 4, 4, 1024, 1024, True),  # causal prefill: items of every length
    (2, 4, 2, 300, 300, True),  # ragged last query tile, GQA
    (4, 8, 2, 1, 3000, False),  # decode over a long cache
])
def test_attention(b, hq, hkv, sq, skv, causal):
    chip = make_chip(cores=4)
    g = mw.attention_graph(b, hq, hkv, sq, skv, 64, causal)
    assert both(lower(g, chip).kernel_programs, chip)


def test_l2_split_array_startup_kernel_gap_and_dma_cap():
    """Loads split between L2 and HBM (transfers of several caps on one bandwidth), the
    array's set-up before a kernel's first matmul, the gap at a kernel's end and a core's
    own DMA rate: the parts of the cost model the small chip leaves at zero."""
    from experiments import api

    h100 = api.chip("h100")
    chip = dataclasses.replace(make_chip(cores=4, l2=h100.l2, kernel_gap=2e-6),
                               core=dataclasses.replace(
                                   make_chip().core,
                                   array=dataclasses.replace(make_chip().core.array,
                                                             startup=3e-7),
                                   dma=dataclasses.replace(make_chip().core.dma,
                                                           max_bandwidth=40e9)))
    g = mw.attention_graph(2, 4, 2, 256, 256, 64, True)
    assert both(lower(g, chip).kernel_programs, chip)
    assert both(lower(mw.gemm_graph("bf16", 256, 512, 256), chip).kernel_programs, chip)


def test_power_capped_chip():
    chip = make_chip(cores=4, power=PowerConfig(tdp_w=1.2))
    progs = lower(mw.attention_graph(1, 4, 4, 1, 2048, 64, False), chip).kernel_programs[0]
    ref = simulate(progs, chip, limits=SIMPY, _store=False)
    assert ref.power_capped
    same(ref, simulate(progs, chip, limits=FAST, _store=False))


def test_whole_layer():
    chip = make_chip(cores=4)
    mapped = map_model(load_model("tiny-llama"), chip, Phase("prefill", 2, seq=100),
                       MapOptions(layers_mapped=1))
    assert both(mapped.lowered.kernel_programs, chip) == len(mapped.lowered.kernel_programs)


def test_identical_chips_of_a_system():
    """Tensor-parallel ranks simulated one chip per class (their group barriers local) run
    compiled; kernels with collectives between chips stay with the SimPy engine."""
    chip = make_chip(cores=2)
    system = SystemConfig("t", (chip,) * 4, Topology("ring", (4,)), LinkConfig(100e9, 1e-6))
    m = map_system(load_model("tiny-gpt2"), list(system.chips), Phase("prefill", 2, seq=32),
                   Parallel(tp=4), MapOptions(layers_mapped=1))
    for kernel in m.kernel_programs:
        same(simulate_system(system, kernel, groups=m.groups, limits=SIMPY, _store=False),
             simulate_system(system, kernel, groups=m.groups, limits=FAST, _store=False))


def _deadlocked() -> dict:
    return {0: Program((build("sem.wait", "mx", 3), build("halt"))),
            1: Program((build("sem.signal", "vec", 3), build("barrier"), build("halt")))}


def test_same_deadlock_report():
    chip = make_chip(cores=2)
    errors = []
    for limits in (SIMPY, FAST):
        with pytest.raises(DeadlockError) as info:
            simulate(_deadlocked(), chip, limits=limits, _store=False)
        errors.append(str(info.value))
    assert errors[0] == errors[1]
    assert "waits for semaphore 3 >= 1" in errors[1]


@pytest.mark.parametrize("field,match", [("max_instructions", "instruction budget"),
                                         ("max_time_s", "simulated-time budget")])
def test_same_budget_error(field, match):
    chip = make_chip(cores=4)
    progs = lower(mw.attention_graph(4, 8, 2, 1, 4000, 64, False), chip).kernel_programs[0]
    ref = simulate(progs, chip, limits=SIMPY, _store=False)
    half = ref.instructions // 2 if field == "max_instructions" else ref.time_s / 2
    errors = []
    for limits in (SIMPY, FAST):
        with pytest.raises(BudgetError, match=match) as info:
            simulate(progs, chip, limits=dataclasses.replace(limits, **{field: half}),
                     _store=False)
        errors.append(str(info.value))
    assert errors[0] == errors[1]


@pytest.mark.parametrize("ns", [-1.0, float("nan")])
def test_an_event_before_now_is_refused(ns):
    """The event queue takes times that never go back (a radix heap on them): a negative
    or NaN duration is an error, not an event taken out of order."""
    chip = make_chip(cores=1)
    prog = Program((build("v.exp", sram(0), sram(0), 4, 4, "bf16", "bf16"), build("halt")))
    m = Machine([chip], {(0, 0): prog}, limits=FAST)
    assert compiled.usable(m)
    known = m.known_costs[0]
    sig = next(iter(known))
    cost, *rest = known[sig]
    known[sig] = (dataclasses.replace(cost, ns=ns), *rest)
    with pytest.raises(ValueError, match="an event before now"):
        m.run()


def test_traced_runs_and_systems_with_collectives_stay_with_simpy():
    chip = make_chip(cores=2)
    progs = {(0, c): p for c, p in
             lower(mw.gemm_graph("bf16", 32, 64, 32), chip).kernel_programs[0].items()}
    assert compiled.usable(Machine([chip], progs))
    assert not compiled.usable(Machine([chip], progs, trace=True))
    assert not compiled.usable(Machine([chip], progs, limits=SIMPY))
    allreduce = Program((build("net.allreduce", hbm(0), hbm(4096), 64, "bf16", 1),
                         build("halt")))
    assert not compiled.usable(Machine([chip], {(0, 0): allreduce}))


# Random programs: each core's engines stream loads (split between L2 and HBM), stores,
# matmuls and vector ops of random sizes, in loops, around barriers, so transfers of every
# cap start and finish on one HBM at random moments.
_OPS = st.sampled_from(["load", "store", "mm", "vec"])
_BLOCK = st.lists(st.tuples(_OPS, st.integers(1, 64), st.integers(1, 64)), min_size=1,
                  max_size=5)


def _program(blocks) -> Program:
    ins = []
    for body, count in blocks:
        start = len(ins)
        ins.append(None)  # the loop, once its end is known
        for op, rows, cols in body:
            if op == "load":
                ins.append(build("dma.load", sram(0), hbm(0), "bf16", rows, cols))
            elif op == "store":
                ins.append(build("dma.store", hbm(1 << 20), sram(0), "bf16", rows, cols))
            elif op == "mm":
                ins.append(build("mm", acc(0), sram(0), sram(8192), rows, 16, cols,
                                 "bf16", "bf16", 0))
            else:
                ins.append(build("v.exp", sram(16384), sram(16384), rows, cols, "bf16",
                                 "bf16"))
        ins[start] = build("loop", count, len(ins))
        ins.append(build("barrier"))
    return Program(tuple(ins) + (build("halt"),))


# The compiled core's event queue kept either way whatever the machine's size (eventq.h:
# a radix heap from some number of engines, a binary heap below): the engines from which
# it is a radix heap.
QUEUES = pytest.mark.parametrize("queue", [0, 1 << 30], ids=["radix heap", "binary heap"])


@contextlib.contextmanager
def kept_as(queue: int):
    before = compiled._fastcore.queue_threshold(queue)
    try:
        yield
    finally:
        compiled._fastcore.queue_threshold(before)


@QUEUES
@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.tuples(_BLOCK, st.integers(1, 4)), min_size=1, max_size=3),
                min_size=1, max_size=3),
       st.sampled_from([0.0, 0.4, 1.0]))
def test_random_programs(queue, cores, hit):
    from experiments import api

    chip = make_chip(cores=len(cores), l2=api.chip("h100").l2)
    progs = {(0, c): _program(blocks) for c, blocks in enumerate(cores)}
    runs = {}
    for label, limits in (("simpy", SIMPY), ("fast", FAST)):
        m = Machine([chip], progs, limits=limits, l2_hits=[hit])
        with kept_as(queue):
            t = m.run()
        runs[label] = (t, m.executed, [list(map(int, c.exec_counts)) for c in m.cores],
                       [dict(c.busy) for c in m.cores])
    (t0, n0, c0, b0), (t1, n1, c1, b1) = runs["simpy"], runs["fast"]
    assert t1 == pytest.approx(t0, rel=1e-12)
    assert (n1, c1) == (n0, c0)
    for x, y in zip(b0, b1):
        assert y == pytest.approx(x, rel=1e-12, abs=1e-9)


@QUEUES
def test_both_queues_on_a_causal_prefill(queue):
    """132 cores with work items of every length: the same result with the events kept
    in either queue as with the SimPy engine."""
    from experiments import api

    chip = api.chip("h100")
    with kept_as(queue):
        both(lower(mw.attention_graph(1, 4, 4, 1024, 1024, 64, True), chip).kernel_programs,
             chip)
