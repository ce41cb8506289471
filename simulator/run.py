"""``simulate``: run programs on a chip, apply its power cap, and return a ``SimResult``.

The power cap (``PowerConfig.tdp_w``): when static + dynamic power at the nominal clock
exceeds the cap, the clock is lowered to ``f = f0 * ((tdp - static) / P_dyn) ** (1/x)`` with
``x`` the DVFS exponent (dynamic power ~ f * V^2 with V tracking f), and the programs are
simulated again at ``f`` — memory-bound phases do not speed up with the clock, so the
answer must come from the model, not from scaling. A few fixed-point steps converge. A load
that runs back to back for only ``power.sustained_s`` seconds (0: indefinitely) runs at the
mean clock the limiter reaches in that time (``burst_clock``, time constant
``power.response_s``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

from hardware.chip import ChipConfig
from hardware.system import SystemConfig
from isa.gcpause import while_paused
from isa.program import Program
from isa.table import TABLE
from simulator import cache
from simulator.energy import OWN_RAIL, energy_breakdown
from simulator.engine.dedupe import group_identical
from simulator.engine.machine import Machine, RunLimits
from simulator.engine.streams import STREAM_ENGINES, check_alike, checked_bounds
from simulator.engine.timing import COUNTS
from simulator.memory.l2 import hit_fraction
from simulator.result import EngineStats, SimResult

POWER_CAP_STEPS = 4
CLOCK_TOLERANCE = 0.005  # the capped clock's fixed point stops within 0.5 %
DEFAULT_LIMITS = RunLimits()


@while_paused
def simulate(programs: Program | Mapping[int, Program], chip: ChipConfig, *,
             functional: bool = False, trace: bool = False,
             limits: RunLimits = DEFAULT_LIMITS, memory_limit: int | None = None,
             dedupe: bool = True, _store: bool = True) -> SimResult:
    """Simulate one chip. ``programs`` is one program (core 0) or {core: program}.
    Performance-mode results come from the kernel-cost cache when the same programs ran
    on the same chip before (``simulator.cache``: exact by construction).

    ``dedupe`` simulates one core per class of address-only-different programs (exact in
    performance mode; see ``simulator.engine.dedupe``); functional mode always runs every core.
    """
    progs = {0: programs} if isinstance(programs, Program) else dict(programs)
    keyed = {(0, core): p for core, p in progs.items()}
    hits = [hit_fraction(progs.values(), chip)]
    store = None if functional or trace or not _store else cache.current()
    if store is not None:
        k = cache.key("chip", chip, keyed, (limits, dedupe, hits))
        if (hit := store.get(k)) is not None:
            for p in progs.values():  # a program out of bounds stays an error
                checked_bounds(p, chip)
            return hit
        result = _uncached(keyed, chip, limits, dedupe, hits)
        store.put(k, result)
        return result
    if functional or trace:
        weights = None
        if dedupe and not functional:
            check_alike(keyed, lambda _: chip)
            keyed, weights = group_identical(keyed)
        return _power_capped(lambda clock: _once(keyed, chip, clock, functional, trace, limits,
                                                 memory_limit, weights, hits=hits), chip, 1)
    return _uncached(keyed, chip, limits, dedupe, hits)


def _uncached(keyed: dict, chip: ChipConfig, limits: RunLimits, dedupe: bool,
              hits: list[float]) -> SimResult:
    """A performance-mode simulation of one chip."""
    weights = None
    if dedupe:
        check_alike(keyed, lambda _: chip)  # the cores not simulated stay in bounds too
        keyed, weights = group_identical(keyed)
    return _power_capped(lambda clock: _once(keyed, chip, clock, False, False, limits,
                                             None, weights, hits=hits), chip, 1)


def _power_capped(run_at, chip: ChipConfig, chips: int) -> SimResult:  # noqa: ANN001
    """Run at the nominal clock; above the cap, find the clock that holds it (fixed point on
    P = static + dynamic(f), dynamic ~ f^x), then relax it for a short burst (below). A held
    clock (``power.held_clock_hz``) is run as it is: the limiter settled on it elsewhere."""
    power = chip.power
    if power.held_clock_hz:
        return run_at(power.held_clock_hz)
    result = run_at(chip.clock_hz)
    cap = power.tdp_w * chips
    clock = chip.clock_hz
    for _ in range(POWER_CAP_STEPS):
        if not cap or result.avg_power_w <= cap * 1.001:
            break
        fixed = sum(result.energy_j.get(k, 0.0) for k in ("static", *OWN_RAIL)) / result.time_s
        ratio = max(cap - fixed, 1e-9) / max(result.avg_power_w - fixed, 1e-9)
        new = max(clock * ratio ** (1.0 / power.dvfs_exponent), power.min_clock_hz or 0.0)
        if abs(new - clock) <= CLOCK_TOLERANCE * clock and clock < chip.clock_hz:
            break  # converged: the run already holds the cap within the tolerance
        clock = new
        result = run_at(clock)
        if clock <= power.min_clock_hz:
            break
    if clock < chip.clock_hz and power.response_s > 0 and power.sustained_s > 0:
        result = run_at(burst_clock(chip.clock_hz, clock, power.sustained_s, power.response_s))
    return result


def burst_clock(nominal: float, capped: float, sustained_s: float, response_s: float) -> float:
    """Mean clock of a load that lasts ``sustained_s`` from a cool start: the power limiter
    pulls the clock from nominal toward the capped one with time constant ``response_s``,
    so f = f_cap + (f0 - f_cap) * (1 - exp(-D/tau)) / (D/tau). Long loads run capped; a
    burst shorter than the limiter's response runs near the nominal clock."""
    x = sustained_s / response_s
    return capped + (nominal - capped) * (-math.expm1(-x) / x)


def _once(programs: dict, chip: ChipConfig, clock: float, functional: bool, trace: bool,
          limits: RunLimits, memory_limit: int | None, weights: dict | None,
          system: SystemConfig | None = None, groups: dict | None = None,
          hits: list[float] | None = None, aliases: dict | None = None) -> SimResult:
    run_chip = chip if clock == chip.clock_hz else dataclasses.replace(chip, clock_hz=clock)
    state = None
    if functional:
        from simulator.functional.state import FunctionalState

        state = FunctionalState(memory_limit=memory_limit)
    chips, network = [run_chip], None
    if system is not None:
        from simulator.network.links import LinkNetwork, link_of

        chips = [run_chip if c == chip else c for c in system.chips]
        network = LinkNetwork(system.topology, system.link, system.collective, groups,
                              link_of(system), aliases)
    machine = Machine(chips, programs, network=network, trace=trace, functional=state,
                      limits=limits, weights=weights, l2_hits=hits)
    time_ns = machine.run()
    return summarize(machine, run_chip, chip, time_ns, state)


@while_paused
def simulate_system(system: SystemConfig, programs: Mapping[tuple[int, int], Program], *,
                    groups: dict[int, list[int]] | None = None, functional: bool = False,
                    trace: bool = False, limits: RunLimits = DEFAULT_LIMITS,
                    memory_limit: int | None = None, dedupe: bool = True,
                    _store: bool = True, aliases: dict[int, dict[int, int]] | None = None
                    ) -> SimResult:
    """Simulate {(chip, core): program} on a system of chips joined by its topology.
    ``groups`` defines chip groups 1, 2, ... for collectives (group 0 is every chip);
    ``aliases`` renames them per chip (replicas sharing programs). The power cap applies
    per chip, to the clock of every chip alike (homogeneous systems)."""
    keyed = dict(programs)
    hits = _system_hits(system, keyed)
    store = None if functional or trace or not _store else cache.current()
    if store is not None:
        k = cache.key("system", system, keyed,
                      (limits, dedupe, sorted((groups or {}).items()), hits,
                       sorted((c, sorted(a.items())) for c, a in (aliases or {}).items())))
        if (hit := store.get(k)) is not None:
            for (c, _), p in keyed.items():  # a program out of bounds stays an error
                checked_bounds(p, system.chips[c])
            return hit
        result = _system_run(system, keyed, groups, False, False, limits, None, dedupe, hits,
                             aliases)
        store.put(k, result)
        return result
    return _system_run(system, keyed, groups, functional, trace, limits, memory_limit, dedupe,
                       hits, aliases)


def _system_hits(system: SystemConfig, keyed: dict) -> list[float]:
    """Each chip's L2 hit fraction, computed once for chips given the very same programs
    (the ranks of a tensor-parallel group share theirs)."""
    seen: dict[tuple, float] = {}
    out = []
    for i, ch in enumerate(system.chips):
        progs = [p for (c, _), p in sorted(keyed.items()) if c == i]
        key = (id(ch), tuple(id(p) for p in progs))
        if key not in seen:
            seen[key] = hit_fraction(progs, ch)
        out.append(seen[key])
    return out


def _system_run(system: SystemConfig, keyed: dict, groups: dict | None, functional: bool,
                trace: bool, limits: RunLimits, memory_limit: int | None, dedupe: bool,
                hits: list[float], aliases: dict | None = None) -> SimResult:
    classes = _chip_classes(system, keyed, hits) if dedupe and not (functional or trace) \
        else None
    if classes is not None:
        return _by_class(system, keyed, limits, hits, classes)
    weights = None
    if dedupe and not functional:
        check_alike(keyed, lambda c: system.chips[c])
        keyed, weights = group_identical(keyed)
    chip = system.chips[0]
    return _power_capped(lambda clock: _once(keyed, chip, clock, functional, trace, limits,
                                             memory_limit, weights, system, groups, hits,
                                             aliases),
                         chip, len(system.chips))


_NET = {spec.opcode for spec in TABLE if spec.mnemonic.startswith("net.")
        and spec.mnemonic != "net.barrier"}
_BARRIER = next(spec.opcode for spec in TABLE if spec.mnemonic == "net.barrier")


def _chip_classes(system: SystemConfig, keyed: dict, hits: list[float]
                  ) -> dict[tuple, list[int]] | None:
    """Chips grouped by what decides their timeline (config, L2 hits, programs but for
    addresses), when no instruction moves data between chips and either each program meets
    the other chips once, at its end (one kernel), or every chip is alike (then all meet
    at every barrier at the same moment, however many kernels the programs hold): chips of
    a class run the same timeline, and classes meet only at the last barrier. None when
    that does not hold."""
    n = len(system.chips)
    if n < 2:
        return None
    per_chip: dict[int, list] = {}
    several = False  # a program with other than one barrier
    for (c, core), p in sorted(keyed.items()):
        ops = [i.opcode for i in p.instructions]
        if not _NET.isdisjoint(ops):
            return None
        several = several or ops.count(_BARRIER) != 1
        per_chip.setdefault(c, []).append((core, cache.program_digest(p)))
    if len(per_chip) != n:
        return None
    classes: dict[tuple, list[int]] = {}
    for c in range(n):
        key = (repr(system.chips[c]), hits[c], tuple(per_chip[c]))
        classes.setdefault(key, []).append(c)
    if several and len(classes) > 1:
        return None
    return classes if len(classes) < n else None


def _by_class(system: SystemConfig, keyed: dict, limits: RunLimits, hits: list[float],
              classes: dict[tuple, list[int]]) -> SimResult:
    """One chip per class simulated alone (its group barrier local) and counted for its
    class. The classes meet at the kernel's last barrier, so the system's time is the
    slowest class's; a faster class's chips wait there (their network engines busy, their
    static power drawn) until it. All at one clock, found for the whole system's power."""
    from simulator.network.base import LoneChipNetwork

    chip, n = system.chips[0], len(system.chips)
    reps = []
    for members in classes.values():
        c = members[0]
        check_alike({(c, (cc, core)): p for (cc, core), p in keyed.items() if cc in members},
                    lambda _, c=c: system.chips[c])  # the chips and cores not simulated
        mine, weights = group_identical({(0, core): p for (cc, core), p in keyed.items()
                                         if cc == c})
        reps.append((system.chips[c], mine, weights, hits[c], len(members)))

    def run_at(clock: float) -> SimResult:
        parts = []
        for ch, mine, weights, hit, count in reps:
            run_chip = ch if clock == ch.clock_hz else dataclasses.replace(ch, clock_hz=clock)
            machine = Machine([run_chip], mine, network=LoneChipNetwork(), limits=limits,
                              weights=weights, l2_hits=[hit])
            time_ns = machine.run()
            cores = sum(cs.weight for cs in machine.cores)
            parts.append((summarize(machine, run_chip, ch, time_ns, None), count, cores))
        return _combine(parts, n)
    return _power_capped(run_at, chip, n)


def _combine(parts: list[tuple[SimResult, int, int]], n: int) -> SimResult:
    """Classes of chips (each a result, its chip count, its cores) as one system result."""
    time = max(r.time_s for r, _, _ in parts)
    first = parts[0][0]
    energy = {k: sum(r.energy_j[k] * m for r, m, _ in parts) for k in first.energy_j}
    energy["static"] = sum(r.energy_j["static"] / r.time_s * m for r, m, _ in parts) * time \
        if first.time_s else 0.0
    cores_total = sum(m * cores for _, m, cores in parts)
    engines = {}
    for k in first.engines:
        busy = sum(r.engines[k].busy_s * m for r, m, _ in parts)
        if k == "net":  # a faster class's cores wait at the last barrier until the slowest
            busy += sum((time - r.time_s) * m * cores for r, m, cores in parts)
        engines[k] = EngineStats(busy, busy / (time * cores_total) if time else 0.0,
                                 sum(r.engines[k].instructions * m for r, m, _ in parts))
    peak = sum(r.peak_macs_per_s * m for r, m, _ in parts)
    macs = sum(r.macs * m for r, m, _ in parts)
    return dataclasses.replace(
        first, time_s=time, cycles=time * first.clock_hz,
        instructions=sum(r.instructions * m for r, m, _ in parts), macs=macs,
        flops=sum(r.flops * m for r, m, _ in parts),
        mac_utilization=macs / (peak * time) if peak and time else 0.0,
        bytes={k: sum(r.bytes[k] * m for r, m, _ in parts) for k in first.bytes},
        energy_j=energy, engines=engines, peak_macs_per_s=peak,
        power_capped=any(r.power_capped for r, _, _ in parts))


def summarize(machine: Machine, run_chip: ChipConfig, nominal: ChipConfig, time_ns: float,
              state: object | None) -> SimResult:
    """Turn a finished machine into a result value."""
    time_s = time_ns * 1e-9
    kinds = machine.kind_counts()
    totals = machine.totals(kinds)
    t = dict(zip(COUNTS, totals.tolist()))
    scale = (run_chip.clock_hz / nominal.clock_hz) ** (nominal.power.dvfs_exponent - 1.0)
    link = getattr(machine.network, "link", None)  # one chip alone has no links
    energy = energy_breakdown(totals, run_chip, time_s, len(machine.chips), scale,
                              link.pj_per_byte if link is not None else 0.0)
    n_cores = sum(ch.cores for ch in machine.chips)
    engines = {}
    per_engine = dict.fromkeys(STREAM_ENGINES, 0.0)
    for rows, per_kind in zip(machine.count_rows, kinds):
        for (engine, _), n in zip(rows, per_kind.tolist()):
            if engine in per_engine:
                per_engine[engine] += n
    for e in STREAM_ENGINES:
        busy = sum(c.busy[e] * c.weight for c in machine.cores) * 1e-9
        count = round(per_engine[e])
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
