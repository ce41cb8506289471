"""A machine: chips (each with cores and a shared HBM) in one SimPy run, and its diagnosis.

``Machine.run`` returns raw totals; ``simulator.run.simulate`` wraps it with the power cap
and turns totals into a ``SimResult``. A run that stops with engines still waiting is a
deadlock, reported with every blocked instruction; a run past its budget is a runaway.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import simpy
from simpy.core import EmptySchedule, StopSimulation

from hardware.chip import ChipConfig
from isa.gcpause import paused
from isa.program import Program
from simulator.engine import compiled
from simulator.engine.core import CoreSim
from simulator.engine.steady import SteadyState
from simulator.engine.timing import COUNTS
from simulator.errors import DeadlockError, SimError
from simulator.memory.bandwidth import SharedBandwidth
from simulator.network.base import Network, SingleChipNetwork


@dataclass(frozen=True)
class RunLimits:
    """Budgets that turn a runaway program into an error instead of a hang, and whether
    periodic stretches may be skipped (``simulator.engine.steady``: exact, so on by
    default; off simulates every event, as tracing and functional mode always do)."""

    max_time_s: float = 3600.0  # simulated seconds
    max_instructions: int = 2_000_000_000  # dynamic instructions
    steady_state: bool = True
    # a performance run in the compiled event core when it is built (simulator.engine.
    # compiled: the same results, many times faster); False: always the SimPy engine
    compiled: bool = True


class Machine:
    """Chips, their cores and shared memories, in one discrete-event environment."""

    def __init__(self, chips: Sequence[ChipConfig], programs: Mapping[tuple[int, int], Program],
                 *, network: Network | None = None, trace: bool = False,
                 functional: object | None = None, limits: RunLimits | None = None,
                 weights: Mapping[tuple[int, int], int] | None = None,
                 l2_hits: Sequence[float] | None = None) -> None:
        self.env = simpy.Environment()
        self.chips = list(chips)
        self.limits = limits = limits or RunLimits()
        self.max_instructions = limits.max_instructions
        self.max_time_ns = limits.max_time_s * 1e9
        self.executed = 0
        self.trace: list | None = [] if trace else None
        self.link_trace: list | None = [] if trace else None  # ((u, v), bytes, start, end)
        self.hbm = [SharedBandwidth(self.env, c.hbm_effective_bw / 1e9, f"chip{i}.hbm")
                    for i, c in enumerate(self.chips)]
        # the L2 serves a share of every load (simulator.memory.l2); its bandwidth is shared too
        self.l2_hits = list(l2_hits) if l2_hits is not None else [0.0] * len(self.chips)
        self.l2 = [SharedBandwidth(self.env, c.l2.bandwidth / 1e9, f"chip{i}.l2")
                   if c.l2.bandwidth > 0 else None for i, c in enumerate(self.chips)]
        self.network = network or SingleChipNetwork()
        self.network.attach(self)
        # address-free signature -> (cost, kind, place, instruction), per chip
        self.known_costs: list[dict] = [{} for _ in self.chips]
        # (engine, counts) -> kind: instructions alike in what they count share a row
        self.count_rows: list[dict] = [{} for _ in self.chips]
        # vector stretches as one timeout each, unless a trace or functional mode must see
        # every instruction (simulator.engine.streams.RUN)
        self.runs = not trace and functional is None
        self.cores: list[CoreSim] = []
        with paused():
            self._add_cores(programs, weights)
        self.functional = functional
        if functional is not None:
            functional.attach(self)  # type: ignore[attr-defined]
        self.steady = SteadyState(self) if (limits.steady_state and not trace
                                            and functional is None) else None

    def _add_cores(self, programs: Mapping[tuple[int, int], Program],
                   weights: Mapping[tuple[int, int], int] | None) -> None:
        for (chip_id, core_id), prog in sorted(programs.items()):
            if not 0 <= chip_id < len(self.chips):
                raise SimError(f"program for chip {chip_id}, but the system has "
                               f"{len(self.chips)} chip(s)")
            if not 0 <= core_id < self.chips[chip_id].cores:
                raise SimError(f"program for core {core_id}, but chip {chip_id} has "
                               f"{self.chips[chip_id].cores} core(s)")
            weight = (weights or {}).get((chip_id, core_id), 1)
            self.cores.append(CoreSim(self, chip_id, core_id, prog, self.chips[chip_id], weight))

    def run(self) -> float:
        """Run to completion; the simulated time in ns."""
        if compiled.usable(self):
            return compiled.run(self)
        procs = [p for core in self.cores for p in core.start()]
        until = self.env.all_of(procs)
        if self.steady is None:
            try:
                self.env.run(until=until)
            except RuntimeError as exc:  # SimPy: no events left, yet engines are not done
                if "No scheduled events left" not in str(exc):
                    raise
                raise DeadlockError(self._deadlock_report(self.cores, self.env.now)) from None
            return self.env.now
        return self._run_steady(until)

    def _run_steady(self, until: simpy.Event) -> float:
        """``env.run`` with a look for a periodic state between events when a pacer loop
        asks for one (``SteadyState.due``)."""
        env, steady = self.env, self.steady
        until.callbacks.append(StopSimulation.callback)
        step = env.step
        try:
            while not steady.off:
                step()
                if steady.due:
                    steady.check()
            while True:  # given up looking: plain stepping
                step()
        except StopSimulation:
            return env.now
        except EmptySchedule:
            raise DeadlockError(self._deadlock_report(self.cores, self.env.now)) from None

    def _deadlock_report(self, cores: list[CoreSim], now: float) -> str:
        blocked = [c.blocked_text(e) for c in cores for e, what in c.blocked.items()
                   if what and not c.done[e]]
        shown = "; ".join(blocked[:8]) + (f"; and {len(blocked) - 8} more" if len(blocked) > 8
                                          else "")
        return f"deadlock at t={now:.0f} ns: {shown}"

    def kind_counts(self) -> list[np.ndarray]:
        """Executions per instruction kind (``streams.compile_streams``), per chip, each
        core counted for the cores it stands for."""
        out = [np.zeros(len(rows)) for rows in self.count_rows]
        for core in self.cores:
            if len(core.kinds):
                out[core.chip_id] += core.weight * np.bincount(
                    core.kinds, weights=core.exec_counts, minlength=len(out[core.chip_id]))
        return out

    def totals(self, kinds: list[np.ndarray] | None = None) -> np.ndarray:
        """Sum over cores of execution count x per-instruction counts, in ``COUNTS`` order
        (``kinds``: ``kind_counts()`` already taken)."""
        total = np.zeros(len(COUNTS))
        read, l2 = COUNTS.index("hbm_read"), COUNTS.index("l2_read")
        for chip_id, per_kind in enumerate(self.kind_counts() if kinds is None else kinds):
            if not per_kind.any():
                continue
            matrix = np.array([c for _, c in self.count_rows[chip_id]], dtype=float)
            part = per_kind @ matrix
            hits = part[read] * self.l2_hits[chip_id]
            part[read] -= hits
            part[l2] += hits
            total += part
        total[COUNTS.index("link_bytes")] += self.network.link_bytes_hops()
        return total
