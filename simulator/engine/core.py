"""One core: four engine processes (DMA, matrix, vector, network), each in program order.

An instruction costs one timed event (plus the events of the shared resources it uses);
engines meet only at semaphores and barriers. This is the hot loop of the simulator.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

import simpy

from hardware.chip import ChipConfig
from isa.operands import Engine
from isa.program import Program
from isa.table import BY_MNEMONIC
from simulator.engine.steady import MIN_COUNT, SignalAt
from simulator.engine.streams import (
    BARRIER,
    HALT,
    LOOP,
    OP,
    RUN,
    SIGNAL,
    STREAM_ENGINES,
    WAIT,
    compile_costs,
    engine_streams,
)
from simulator.engine.sync import Barrier, Semaphore
from simulator.errors import BudgetError

if TYPE_CHECKING:
    from simulator.engine.machine import Machine


STORES = frozenset(BY_MNEMONIC[m].opcode for m in ("dma.store", "dma.storeadd"))


class CoreSim:
    """The engines of one core running one program."""

    def __init__(self, machine: Machine, chip_id: int, core_id: int, program: Program,
                 chip: ChipConfig, weight: int = 1) -> None:
        self.machine = machine
        self.env: simpy.Environment = machine.env
        self.chip_id, self.core_id = chip_id, core_id
        self.program = program
        self.chip = chip
        self.weight = weight  # identical cores this one stands for
        self._ucost, self._per_pc, self.kinds, self.cids = compile_costs(
            program, chip, machine.known_costs[chip_id], rows=machine.count_rows[chip_id])
        self.exec_counts = [0] * len(program.instructions)
        self.sems: dict[int, Semaphore] = {}
        self.barrier = Barrier(self.env, len(STREAM_ENGINES))
        self.busy = {e: 0.0 for e in STREAM_ENGINES}
        # what each engine waits on, described only if a deadlock is reported (blocked_text)
        self.blocked: dict[Engine, tuple | None] = {e: None for e in STREAM_ENGINES}
        self.done = {e: False for e in STREAM_ENGINES}
        self.dma_tail = 0.0  # when the last DMA in flight delivers (ns)
        self.vec_tail = 0.0  # when the last vector op's result is ready (its latency)
        self.mx_warm = False  # the matrix engine has run since the last barrier
        dma_bw = chip.core.dma.max_bandwidth
        self.dma_cap = dma_bw / 1e9 if dma_bw > 0 else float("inf")  # bytes per ns
        self.startup_ns = chip.core.array.startup * 1e9  # before a kernel's first matmul
        self.gap_ns = chip.kernel_gap * 1e9  # after a kernel's closing net.barrier

    @cached_property
    def streams(self) -> dict[Engine, tuple]:
        """The engines' streams as items, for the SimPy engine (the compiled core writes
        its own code from the program, ``compiled._code``)."""
        return engine_streams(self.program, self.machine.runs)

    @cached_property
    def costs(self) -> list:
        """Each pc's static cost, for the SimPy engine."""
        return [self._ucost[u] for u in self._per_pc.tolist()]

    def start(self) -> list[simpy.Process]:
        self.procs = [self.env.process(self._engine(engine)) for engine in STREAM_ENGINES]
        return self.procs

    def sem(self, number: int) -> Semaphore:
        s = self.sems.get(number)
        if s is None:
            s = self.sems[number] = Semaphore(self.env)
        return s

    def blocked_text(self, engine: Engine) -> str | None:
        """What ``engine`` waits on, in words (None: not blocked)."""
        what = self.blocked[engine]
        if what is None:
            return None
        kind, pc = what[0], what[1]
        if kind == "peers":
            return f"{self.where(pc)} waiting for its peers"
        if kind == "sem":
            return f"{self.where(pc)} on {engine.value}: waits for semaphore {what[2]} >= {what[3]}"
        return f"{self.where(pc)} on {engine.value}: at barrier"

    def where(self, pc: int) -> str:
        ins = self.program.instructions[pc]
        return f"chip {self.chip_id} core {self.core_id} pc {pc} ({ins.mnemonic})"

    def _budget_message(self, pc: int) -> str:
        m = self.machine
        if m.executed > m.max_instructions:
            return (f"instruction budget of {m.max_instructions:,} reached at {self.where(pc)}; "
                    f"raise --max-instructions")
        return (f"simulated-time budget of {m.limits.max_time_s:g} s reached at {self.where(pc)}; "
                f"raise --max-time")

    def _engine(self, engine: Engine):
        yield from self._run(engine, self.streams[engine], [0] * 8)
        yield from self._drain(engine)
        self.done[engine] = True

    def _tail(self, engine: Engine) -> float:
        """When the engine's work in flight completes: DMA deliveries, vector results."""
        return self.dma_tail if engine is Engine.DMA else \
            self.vec_tail if engine is Engine.VECTOR else 0.0

    def _drain(self, engine: Engine):
        """Wait until the engine's work in flight has completed (an ordering point)."""
        tail = self._tail(engine)
        if tail > self.env.now:
            yield self.env.timeout(tail - self.env.now)

    def _signal_at(self, when: float, number: int) -> None:
        """A signal fires when the engine's work before it has completed (DMA transfers
        delivered, vector results past their latency) without holding up the engine: later
        work keeps streaming, as a TMA's completion barrier or a pipelined unit does. Tails
        never decrease, so signals keep their order."""
        timer = self.env.timeout(when - self.env.now)
        timer.callbacks.append(SignalAt(self, number))

    def _move(self, nbytes: float, load: bool, cap: float = 0.0,
              hbm_cap: float = 0.0) -> simpy.Event:
        """A DMA's bytes on HBM, or split between L2 and HBM for a load (simulator.memory.l2); the
        core's own rate cap is shared by the two parts in proportion. ``cap`` (bytes/s): a
        transfer with its own rate (the chip's copy engine), all of it on HBM. ``hbm_cap``
        (bytes/s): the most the HBM part may move at (its kernel's window, Little's law)."""
        m, chip = self.machine, self.chip_id
        if cap:
            return m.hbm[chip].transfer(nbytes, cap / 1e9, self.weight)
        hit = m.l2_hits[chip] if load else 0.0
        own = min(self.dma_cap, hbm_cap / 1e9) if hbm_cap else self.dma_cap  # HBM part's cap
        if hit <= 0.0 or m.l2[chip] is None:
            return m.hbm[chip].transfer(nbytes, own, self.weight)
        miss = 1.0 - hit
        parts = [m.l2[chip].transfer(nbytes * hit, self.dma_cap * hit, self.weight)]
        if miss > 0:
            parts.append(m.hbm[chip].transfer(nbytes * miss, min(self.dma_cap * miss, own),
                                              self.weight))
        return self.env.all_of(parts)

    def _run(self, engine: Engine, items: tuple, regs: list[int]):
        """Execute ``items``; returns True when a ``halt`` was reached."""
        env, machine, costs = self.env, self.machine, self.costs
        for item in items:
            tag = item[0]
            if tag == OP:
                pc, ins = item[1], item[2]
                cost = costs[pc]
                start = env.now
                if engine is Engine.MATRIX and not self.mx_warm:
                    self.mx_warm = True  # a kernel's first matmul waits for the set-up
                    if self.startup_ns:
                        yield env.timeout(self.startup_ns)
                if cost.ns:
                    yield env.timeout(cost.ns)
                if cost.hbm_bytes:
                    yield self._move(cost.hbm_bytes, ins.opcode not in STORES, cost.cap,
                                     cost.hbm_cap)
                    self.dma_tail = max(self.dma_tail, env.now + cost.tail_ns)
                elif cost.tail_ns and engine is Engine.VECTOR:
                    self.vec_tail = max(self.vec_tail, env.now + cost.tail_ns)
                if engine is Engine.NETWORK:
                    self.blocked[engine] = ("peers", pc)
                    yield from machine.network.execute(self, pc, ins, regs)
                    self.blocked[engine] = None
                end = env.now
                self.busy[engine] += end - start
                self.exec_counts[pc] += 1
                machine.executed += self.weight
                if machine.executed > machine.max_instructions or end > machine.max_time_ns:
                    raise BudgetError(self._budget_message(pc))
                if machine.trace is not None:
                    machine.trace.append((self.chip_id, self.core_id, engine.value, pc,
                                          start, end))
                if machine.functional is not None:
                    machine.functional.execute(self, engine, pc, ins, regs)
            elif tag == RUN:  # consecutive vector ops: one timeout for the stretch
                start = env.now
                t, counts = start, self.exec_counts
                for pc, _ins in item[1]:
                    cost = costs[pc]
                    t += cost.ns
                    if cost.tail_ns:
                        self.vec_tail = max(self.vec_tail, t + cost.tail_ns)
                    counts[pc] += 1
                machine.executed += self.weight * len(item[1])
                if t > start:
                    yield env.timeout(t - start)
                self.busy[engine] += env.now - start
                if machine.executed > machine.max_instructions or env.now > machine.max_time_ns:
                    raise BudgetError(self._budget_message(item[1][-1][0]))
            elif tag == LOOP:
                loop = item[1]
                saved = regs[:]
                ctr = [0]  # the iteration; a list, so the steady-state shortcut can advance it
                steady = machine.steady if loop.count >= MIN_COUNT else None
                key = (id(self), engine, loop.pc)
                while ctr[0] < loop.count:
                    if steady is not None:
                        steady.tick(key)
                    if (yield from self._run(engine, loop.body, regs)):
                        return True
                    for reg, inc in loop.regs:
                        regs[reg] += inc
                    ctr[0] += 1
                if steady is not None:
                    steady.leave(key)
                regs[:] = saved
            elif tag == SIGNAL:
                machine.executed += self.weight
                if machine.executed > machine.max_instructions:
                    raise BudgetError(self._budget_message(item[1]))
                if machine.functional is not None:
                    machine.functional.on_signal(self, engine, item[2])
                tail = self._tail(engine)
                if tail > env.now:
                    self._signal_at(tail, item[2])  # when the work before it completes
                else:
                    self.sem(item[2]).signal()
            elif tag == WAIT:
                pc, number, need = item[1], item[2], item[3]
                machine.executed += self.weight
                if machine.executed > machine.max_instructions:
                    raise BudgetError(self._budget_message(pc))
                event = self.sem(number).wait(need)
                if event is not None:
                    self.blocked[engine] = ("sem", pc, number, need)
                    yield event
                    self.blocked[engine] = None
                if machine.functional is not None:
                    machine.functional.on_wait(self, engine, number)
            elif tag == BARRIER:
                yield from self._drain(engine)
                if engine is Engine.MATRIX:
                    self.mx_warm = False
                self.blocked[engine] = ("barrier", item[1])
                scope = ("core", self.chip_id, self.core_id)
                if machine.functional is not None:
                    machine.functional.on_barrier_arrive(self, engine, scope)
                yield self.barrier.arrive()
                self.blocked[engine] = None
                if machine.functional is not None:
                    machine.functional.on_barrier_leave(self, engine, scope)
            elif tag == HALT:
                return True
        return False
