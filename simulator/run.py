"""``simulate``: run programs on a chip, apply its power cap, and return a ``SimResult``.

The power cap (``PowerConfig.tdp_w``): when static + dynamic power at the nominal clock
exceeds the cap, the clock is lowered to ``f = f0 * ((tdp - static) / P_dyn) ** (1/x)`` with
``x`` the DVFS exponent (dynamic power ~ f * V^2 with V tracking f), and the programs are
simulated again at ``f`` — memory-bound phases do not speed up with the clock, so the
answer must come from the model, not from scaling. A few fixed-point steps converge.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from isa.program import Program
from simulator.dedupe import group_identical
from simulator.energy import energy_breakdown
from simulator.hardware import ChipConfig
from simulator.machine import Machine, RunLimits
from simulator.result import EngineStats, SimResult
from simulator.streams import STREAM_ENGINES
from simulator.system import SystemConfig
from simulator.timing import COUNTS

POWER_CAP_STEPS = 4
DEFAULT_LIMITS = RunLimits()


def simulate(programs: Program | Mapping[int, Program], chip: ChipConfig, *,
             functional: bool = False, trace: bool = False,
             limits: RunLimits = DEFAULT_LIMITS, memory_limit: int | None = None,
             dedupe: bool = True) -> SimResult:
    """Simulate one chip. ``programs`` is one program (core 0) or {core: program}.

    ``dedupe`` simulates one core per class of address-only-different programs (exact in
    performance mode; see ``simulator.dedupe``); functional mode always runs every core.
    """
    progs = {0: programs} if isinstance(programs, Program) else dict(programs)
    keyed = {(0, core): p for core, p in progs.items()}
    weights = None
    if dedupe and not functional:
        keyed, weights = group_identical(keyed)
    result = _once(keyed, chip, chip.clock_hz, functional, trace, limits, memory_limit,
                   weights)
    cap = chip.power.tdp_w
    clock = chip.clock_hz
    for _ in range(POWER_CAP_STEPS):
        if not cap or result.avg_power_w <= cap * 1.001:
            break
        static = result.energy_j["static"] / result.time_s
        dynamic = result.avg_power_w - static
        ratio = max(cap - static, 1e-9) / dynamic
        clock = max(clock * ratio ** (1.0 / chip.power.dvfs_exponent),
                    chip.power.min_clock_hz or 0.0)
        result = _once(keyed, chip, clock, functional, trace, limits, memory_limit, weights)
        if clock <= chip.power.min_clock_hz:
            break
    return result


def _once(programs: dict, chip: ChipConfig, clock: float, functional: bool, trace: bool,
          limits: RunLimits, memory_limit: int | None, weights: dict | None,
          system: SystemConfig | None = None, groups: dict | None = None) -> SimResult:
    run_chip = chip if clock == chip.clock_hz else dataclasses.replace(chip, clock_hz=clock)
    state = None
    if functional:
        from simulator.functional.state import FunctionalState

        state = FunctionalState(memory_limit=memory_limit)
    chips, network = [run_chip], None
    if system is not None:
        from simulator.linknet import LinkNetwork

        chips = [run_chip if c == chip else c for c in system.chips]
        network = LinkNetwork(system.topology, system.link, system.collective, groups)
    machine = Machine(chips, programs, network=network, trace=trace, functional=state,
                      limits=limits, weights=weights)
    time_ns = machine.run()
    return summarize(machine, run_chip, chip, time_ns, state)


def simulate_system(system: SystemConfig, programs: Mapping[tuple[int, int], Program], *,
                    groups: dict[int, list[int]] | None = None, functional: bool = False,
                    trace: bool = False, limits: RunLimits = DEFAULT_LIMITS,
                    memory_limit: int | None = None, dedupe: bool = True) -> SimResult:
    """Simulate {(chip, core): program} on a system of chips joined by its topology.
    ``groups`` defines chip groups 1, 2, ... for collectives (group 0 is every chip). The
    power cap applies per chip, to the clock of every chip alike (homogeneous systems)."""
    keyed, weights = dict(programs), None
    if dedupe and not functional:
        keyed, weights = group_identical(keyed)
    chip = system.chips[0]
    result = _once(keyed, chip, chip.clock_hz, functional, trace, limits, memory_limit,
                   weights, system, groups)
    cap = chip.power.tdp_w * len(system.chips)
    clock = chip.clock_hz
    for _ in range(POWER_CAP_STEPS):
        if not cap or result.avg_power_w <= cap * 1.001:
            break
        static = result.energy_j["static"] / result.time_s
        ratio = max(cap - static, 1e-9) / (result.avg_power_w - static)
        clock = max(clock * ratio ** (1.0 / chip.power.dvfs_exponent),
                    chip.power.min_clock_hz or 0.0)
        result = _once(keyed, chip, clock, functional, trace, limits, memory_limit, weights,
                       system, groups)
    return result


def summarize(machine: Machine, run_chip: ChipConfig, nominal: ChipConfig, time_ns: float,
              state: object | None) -> SimResult:
    """Turn a finished machine into a result value."""
    time_s = time_ns * 1e-9
    totals = machine.totals()
    t = dict(zip(COUNTS, totals.tolist()))
    scale = (run_chip.clock_hz / nominal.clock_hz) ** (nominal.power.dvfs_exponent - 1.0)
    energy = energy_breakdown(totals, run_chip, time_s, len(machine.chips), scale)
    n_cores = sum(ch.cores for ch in machine.chips)
    engines = {}
    for e in STREAM_ENGINES:
        busy = sum(c.busy[e] * c.weight for c in machine.cores) * 1e-9
        count = sum(n * c.weight for c in machine.cores for pc, n in enumerate(c.exec_counts)
                    if n and c.program.instructions[pc].engine == e)
        engines[e.value] = EngineStats(busy, busy / (time_s * n_cores) if time_s else 0.0, count)
    peak = sum(_peak_macs(ch) for ch in machine.chips)
    names = None
    if machine.trace is not None:
        names = {(c.chip_id, c.core_id, pc): ins.mnemonic for c in machine.cores
                 for pc, ins in enumerate(c.program.instructions)}
    return SimResult(
        chip=nominal.name, time_s=time_s, cycles=time_s * run_chip.clock_hz,
        clock_hz=run_chip.clock_hz, nominal_clock_hz=nominal.clock_hz,
        power_capped=run_chip.clock_hz < nominal.clock_hz, instructions=machine.executed,
        macs=t["macs"], flops=t["flops"],
        mac_utilization=t["macs"] / (peak * time_s) if peak and time_s else 0.0,
        bytes={k: t[k] for k in COUNTS if k not in ("macs", "flops", "vector_ops", "mac_pj")},
        energy_j=energy, engines=engines,
        races=tuple(getattr(state, "races", ())), peak_macs_per_s=peak,
        trace=tuple(machine.trace) if machine.trace is not None else None, trace_names=names,
        link_trace=tuple(machine.link_trace) if machine.link_trace is not None else None,
        memory=state)


def _peak_macs(chip: ChipConfig) -> float:
    """Peak MACs/s at the lowest-precision-agnostic bf16 rate (or the first type listed)."""
    a = chip.core.array
    from isa.dtypes import DType

    per_pe = a.macs_per_pe.get(DType.BF16) or next(iter(a.macs_per_pe.values()))
    return a.rows * a.cols * per_pe * chip.cores * chip.clock_hz
