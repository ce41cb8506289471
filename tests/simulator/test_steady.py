"""The steady-state shortcut is exact: every field equals the event-by-event simulation.

Each case runs the same programs twice, with and without skipping whole periods, over
kernels of every kind: GEMMs with ragged edges and a second wave, row-wise ops, causal and
decode attention, a whole layer, a tensor-parallel layer on a 2-chip system (collectives
between kernels), and a chip under its power cap. The long ones must actually skip.
"""

from __future__ import annotations

import dataclasses

import pytest

from experiments import measured_work as mw
from hardware.chip import PowerConfig
from hardware.system import LinkConfig, SystemConfig
from hardware.topology import Topology
from mapper.kernels.gemm import Tiling
from mapper.layers import Phase
from mapper.lower import lower
from mapper.model import load_model
from mapper.parallel import Parallel, map_system
from mapper.pipeline import MapOptions, map_model
from simulator.engine.machine import RunLimits
from simulator.engine.steady import STATS
from simulator.run import simulate, simulate_system
from tests.simulator.conftest import assert_same_result, make_chip

# the SimPy engine both ways: the compiled core never skips (it needs no shortcut)
FULL = RunLimits(steady_state=False, compiled=False)
STEADY = RunLimits(compiled=False)


def same(full, fast) -> None:
    assert_same_result(full, fast)


def both(programs, chip) -> None:
    """Every kernel of ``programs`` (a list of {core: program}) both ways; returns the
    periods skipped."""
    before = STATS.periods
    for progs in programs:
        same(simulate(progs, chip, limits=FULL, _store=False),
             simulate(progs, chip, limits=STEADY, _store=False))
    return STATS.periods - before


@pytest.fixture
def tiles(monkeypatch):
    import mapper.lower as low

    def use(t: Tiling) -> None:
        monkeypatch.setattr(low, "_choose_tilings", lambda g, c, *rest: {"gemm": t})
    return use


@pytest.mark.parametrize("m,k,n,cores", [
    (64, 1024, 64, 4),  # one class, a long K loop
    (100, 640, 70, 3),  # ragged edges: three classes of cores with other periods
    (16, 512, 80, 4),  # five tiles on four cores: a second wave
])
def test_gemm(m, k, n, cores, tiles):
    tiles(Tiling(16, 16, 16))
    chip = make_chip(cores=cores)
    low = lower(mw.gemm_graph("bf16", m, k, n), chip)
    assert both(low.kernel_programs, chip) > 0


@pytest.mark.parametrize("op,rows,cols", [("rmsnorm", 300, 256), ("add", 1000, 192),
                                          ("softmax", 77, 512)])
def test_rowwise(op, rows, cols):
    chip = make_chip(cores=4)
    both(lower(mw.rows_graph(op, rows, cols), chip).kernel_programs, chip)


@pytest.mark.parametrize("b,hq,hkv,sq,skv,causal,skips", [
    (1, 4, 4, 2048, 2048, True, True),  # causal prefill: items of every length
    (2, 4, 2, 300, 300, True, False),  # ragged last query tile, GQA (too short to skip)
    (4, 8, 2, 1, 4000, False, True),  # decode over a long cache
])
def test_attention(b, hq, hkv, sq, skv, causal, skips):
    chip = make_chip(cores=4)
    g = mw.attention_graph(b, hq, hkv, sq, skv, 64, causal)
    assert (both(lower(g, chip).kernel_programs, chip) > 0) == skips


def test_power_capped_chip():
    """Under the cap the clock is found by simulating again: each run skips alike."""
    chip = make_chip(cores=4, power=PowerConfig(tdp_w=1.2))
    g = mw.attention_graph(1, 4, 4, 1, 2048, 64, False)
    progs = lower(g, chip).kernel_programs
    full = simulate(progs[0], chip, limits=FULL, _store=False)
    assert full.power_capped
    same(full, simulate(progs[0], chip, limits=STEADY, _store=False))


def test_whole_layer():
    chip = make_chip(cores=4)
    model = load_model("tiny-llama")
    mapped = map_model(model, chip, Phase("decode", 4, ctx=300), MapOptions(layers_mapped=1))
    both(mapped.lowered.kernel_programs, chip)


def test_tensor_parallel_layer_with_collectives():
    chip = make_chip(cores=2)
    system = SystemConfig("t", (chip, chip), Topology("full", (2,)), LinkConfig(100e9, 1e-6))
    m = map_system(load_model("tiny-llama"), list(system.chips), Phase("decode", 4, ctx=400),
                   Parallel(tp=2), MapOptions(layers_mapped=1))
    same(simulate_system(system, m.programs, groups=m.groups, limits=FULL, _store=False),
         simulate_system(system, m.programs, groups=m.groups, limits=STEADY, _store=False))


def test_budget_still_stops_a_skipping_run():
    """A skip never jumps past the instruction budget: the run stops as the full one does."""
    from simulator.errors import BudgetError

    chip = make_chip(cores=4)
    g = mw.attention_graph(4, 8, 2, 1, 4000, 64, False)
    progs = lower(g, chip).kernel_programs[0]
    total = simulate(progs, chip, limits=FULL, _store=False).instructions
    for limits in (dataclasses.replace(FULL, max_instructions=total // 2),
                   dataclasses.replace(STEADY, max_instructions=total // 2)):
        with pytest.raises(BudgetError, match="instruction budget"):
            simulate(progs, chip, limits=limits, _store=False)


@pytest.mark.parametrize("name,tdp", [("tiny-llama", 0.0), ("tiny-gpt2", 0.0),
                                      ("tiny-gpt2", 1.1)])
def test_identical_chips_simulated_once_equal_every_chip(name, tdp, monkeypatch):
    """Tensor-parallel ranks that run the same programs (but for addresses) and move no
    data between chips in a kernel: one chip per class is simulated (gpt2's rank 0 adds
    the row-parallel bias: a class of its own), the classes meeting at the kernel's last
    barrier; kernels with a collective are simulated whole. Either way every field
    equals simulating every chip."""
    import simulator.run as run

    chip = make_chip(cores=2, power=PowerConfig(tdp_w=tdp))  # 1.1 W: capped at its clock
    system = SystemConfig("t", (chip,) * 4, Topology("ring", (4,)), LinkConfig(100e9, 1e-6))
    m = map_system(load_model(name), list(system.chips), Phase("prefill", 2, seq=32),
                   Parallel(tp=4), MapOptions(layers_mapped=1))
    used, capped = [], []
    orig = run._by_class
    monkeypatch.setattr(run, "_by_class", lambda *a: used.append(len(a[-1])) or orig(*a))
    for kernel in m.kernel_programs:
        fast = simulate_system(system, kernel, groups=m.groups, _store=False)
        monkeypatch.setattr(run, "_chip_classes", lambda *a: None)
        full = simulate_system(system, kernel, groups=m.groups, _store=False)
        monkeypatch.undo()
        monkeypatch.setattr(run, "_by_class", lambda *a: used.append(len(a[-1])) or orig(*a))
        same(full, fast)
        assert fast.energy_total_j == pytest.approx(full.energy_total_j, rel=1e-9)
        capped.append(full.power_capped)
    assert used  # the shortcut ran on some kernels
    if name == "tiny-gpt2":
        assert 2 in used  # rank 0 and the others: two classes
    assert any(capped) == (tdp > 0)


def test_alike_chips_run_once_through_several_kernels(monkeypatch):
    """A training layer's attention backward holds several kernels (zeroing dQ, D, the
    five matmuls, the cast), each ending in a group barrier. When every rank's programs
    are alike but for addresses, one chip stands for all at every barrier: every field
    equals simulating every chip."""
    import simulator.run as run
    from experiments.train.costs import _graph
    from isa import DType
    from mapper.backward import GradMode
    from mapper.layers import Shard

    chip = make_chip(cores=2)
    system = SystemConfig("t", (chip,) * 2, Topology("ring", (2,)), LinkConfig(100e9, 1e-6))
    g = _graph(load_model("tiny-llama"), Phase("prefill", 1, seq=64), Shard(2, 1, 1),
               GradMode(DType.FP32, True), "fused")
    low = lower(g, chip, confirm=None, top=1, layout="row", barrier_group=1)
    kernels = dict(zip((n for n, _ in low.kernels), low.kernel_programs))
    progs = {(c, core): p for c in (0, 1) for core, p in kernels["bwd.l0.attention"].items()}
    barriers = [i.mnemonic for i in progs[0, 0].instructions].count("net.barrier")
    assert barriers > 1
    used = []
    orig = run._by_class
    monkeypatch.setattr(run, "_by_class", lambda *a: used.append(len(a[-1])) or orig(*a))
    fast = simulate_system(system, progs, groups={1: [0, 1]}, _store=False)
    assert used == [1]
    full = simulate_system(system, progs, groups={1: [0, 1]}, _store=False, dedupe=False)
    same(full, fast)


def test_a_run_that_never_finds_a_period_stops_looking(tiles, monkeypatch):
    """Snapshots cost time: once ``PROBATION`` of them matched nothing and the skips saved
    less than they cost, the run steps on without looking (same results)."""
    import simulator.engine.steady as st

    tiles(Tiling(16, 16, 16))
    chip = make_chip(cores=4)
    progs = lower(mw.gemm_graph("bf16", 64, 2048, 64), chip).kernel_programs[0]
    seen = []
    check = st.SteadyState.check

    def watched(self):
        seen.append(self)
        check(self)
    monkeypatch.setattr(st.SteadyState, "_periods", lambda self, old, new: 0)
    monkeypatch.setattr(st.SteadyState, "check", watched)
    same(simulate(progs, chip, limits=FULL, _store=False),
         simulate(progs, chip, limits=STEADY, _store=False))
    assert seen and seen[-1].off and seen[-1].taken == st.PROBATION
