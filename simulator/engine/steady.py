"""Exact shortcut: a machine in a periodic steady state advances whole periods at once.

Long kernels are loops of identical tiles. Once every engine of every core repeats the same
pattern, the state of the whole machine one period later is the state now, shifted in time
and with loop counters advanced. That state is everything the future depends on: where each
engine is in its program (loop counters aside), what it waits for and how long that still
takes, semaphore counts and waiters, transfers in flight on every shared bandwidth with the
bytes they have left, pending completion timers, the cores' DMA / vector tails. Registers
only make addresses, which never change timing in performance mode.

``SteadyState`` takes such a snapshot each time a *pacer* loop (the first long loop entered)
starts an iteration, and compares it with the snapshots of earlier iterations. When two
match — same structure, same relative times and bytes to float rounding, loop counters
ahead — the window between them repeats until the first loop would leave its bounds, so
``k`` whole periods are skipped: time and every pending event move by ``k`` periods, loop
counters and registers by ``k`` windows' worth, and every count (instructions per pc, engine
busy time, bytes moved, memory busy time) by ``k`` times the window's increment. What the
full simulation would do in those periods is exactly that, so results are the same
(``tests/simulator/test_steady.py`` compares every field on kernels of every kind).

Anything not understood — a network engine inside a collective, an event of unknown
origin, link traffic in the window — makes the snapshot void: the simulation simply
continues event by event.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from simpy.events import Condition

from simulator.engine.streams import LOOP, OP, RUN, STREAM_ENGINES

if TYPE_CHECKING:
    from simulator.engine.machine import Machine

MIN_COUNT = 6  # loops shorter than this are not worth a snapshot
HISTORY = 8  # snapshots compared against
RTOL, ATOL = 1e-12, 1e-9  # equal to float rounding: relative, and absolute (ns or bytes)
GIVE_UP = 64  # snapshots matching nothing, per skip found, before the run stops looking
# What one snapshot costs, in instructions simulated, per engine process it describes
# (measured: ~7.7 ms for 132 cores x 4 engines, about two instructions' time each). Once
# PROBATION snapshots have failed, the run stops looking when what the skips saved is less
# than what the snapshots cost: a kernel periodic only in short stretches (causal
# attention) pays more for the looking than it gains.
SNAPSHOT_COST = 2.0
PROBATION = 16  # failed snapshots before the cost rule may stop the looking


class Stats:
    """What the shortcut did in this process (for benchmarks and tests)."""

    __slots__ = ("periods", "skipped_ns", "skips")

    def __init__(self) -> None:
        self.periods = self.skips = 0
        self.skipped_ns = 0.0


STATS = Stats()


class Wake:
    """A shared bandwidth's timer (a callable with its owner, so a snapshot can name it)."""

    __slots__ = ("bw", "gen")

    def __init__(self, bw, gen: int) -> None:  # noqa: ANN001
        self.bw, self.gen = bw, gen

    def __call__(self, _ev) -> None:  # noqa: ANN001
        self.bw._wake(self.gen)


class SignalAt:
    """A semaphore signal due when a core's work in flight completes."""

    __slots__ = ("core", "number")

    def __init__(self, core, number: int) -> None:  # noqa: ANN001
        self.core, self.number = core, number

    def __call__(self, _ev) -> None:  # noqa: ANN001
        self.core.sem(self.number).signal()


class _Op(tuple):
    """An op's place (compared) with the time it started (not compared)."""

    def __new__(cls, place: tuple, start: float):  # noqa: ANN204
        out = super().__new__(cls, place)
        out.start = start
        return out


class _Void(Exception):
    """The state holds something a snapshot cannot describe."""


class SteadyState:
    """Detects a periodic machine and skips whole periods (see the module docstring)."""

    def __init__(self, machine: Machine) -> None:
        self.m = machine
        self.due = False
        self.pacer: tuple | None = None
        self.ticks = 0
        self.stride = 1
        self.misses = 0
        self.history: list[tuple] = []
        self.skipped_periods = 0
        self.skipped_ns = 0.0
        self.failed = 0  # snapshots that matched none, over the run
        self.taken = 0  # snapshots taken, over the run
        self.saved = 0  # instructions the skips advanced, over the run
        self.skips = 0
        self.off = False  # given up: this machine is not periodic for long (see check)

    # ---- called by the engines -------------------------------------------------------
    def tick(self, key: tuple) -> None:
        """A long loop starts an iteration; the pacer's iterations are snapshot moments."""
        if self.off:
            return
        if self.pacer is None:
            self.pacer, self.ticks, self.stride, self.misses = key, 0, 1, 0
            self.history.clear()
        if key == self.pacer:
            self.ticks += 1
            if self.ticks % self.stride == 0:
                self.due = True

    def leave(self, key: tuple) -> None:
        if key == self.pacer:
            self.pacer = None
            self.history.clear()

    # ---- called by the run loop between events ----------------------------------------
    def check(self) -> None:
        self.due = False
        self.taken += 1
        try:
            snap = self._snapshot()
        except _Void:
            self.history.clear()
            return
        for old in reversed(self.history):
            k = self._periods(old, snap)
            if k:
                self.skips += 1
                self._skip(old, snap, k)
                self.history.clear()
                self.stride, self.misses = 1, 0
                return
        self.history.append(snap)
        if len(self.history) > HISTORY:
            del self.history[0]
        self.failed += 1
        cost = SNAPSHOT_COST * self.taken * sum(len(c.procs) for c in self.m.cores)
        if self.failed >= GIVE_UP * (self.skips + 1) or (
                self.failed >= PROBATION and self.saved < cost):
            self.off = True  # snapshots cost more than they save (causal attention's cores
            return  # each leave a loop every period or two)
        self.misses += 1
        if self.misses % HISTORY == 0 and self.stride < 64:
            self.stride *= 2  # a long aperiodic stretch: look less often

    # ---- the snapshot -----------------------------------------------------------------
    def _snapshot(self) -> tuple:
        m = self.m
        env = m.env
        now = env.now
        struct: list = []
        floats: list[float] = []
        frames: list = []  # (frame locals holder, count, regs, loop) per loop level in flight
        labels: dict[int, tuple] = {}
        in_op: list[list] = []  # per core, the engines inside an op (started before now)
        for ci, core in enumerate(m.cores):
            in_op.append([])
            for ei, proc in enumerate(core.procs):
                tag = (ci, ei)
                if not proc.is_alive:
                    struct.append((tag, "done"))
                    continue
                pos = self._position(proc, frames, now)
                struct.append((tag, pos))
                started = [p.start for p in pos if isinstance(p, _Op)]
                if started:
                    in_op[ci].append((STREAM_ENGINES[ei], started[0]))
                target = proc._target
                labels[id(target)] = tag
                if isinstance(target, Condition):
                    for j, ev in enumerate(target._events):
                        labels[id(ev)] = (*tag, j)
                        struct.append((tag, j, ev.triggered))
            struct.append((ci, core.mx_warm, core.barrier.arrived,
                           tuple((n, s.count, tuple(w[0] for w in s.waiters))
                                 for n, s in sorted(core.sems.items()))))
            floats += (max(core.dma_tail - now, 0.0), max(core.vec_tail - now, 0.0))
        for bi, bw in enumerate(self._bandwidths()):
            struct.append(self._flows(bi, bw, now, labels, floats))
        net = m.network
        struct.append(tuple((g, b.arrived) for g, b in sorted(getattr(net, "barriers",
                                                                       {}).items())))
        for t, prio, _eid, ev in sorted(env._queue):
            label = labels.get(id(ev))
            if label is None:
                cbs = ev.callbacks or ()
                if len(cbs) == 1 and isinstance(cbs[0], Wake):
                    w = cbs[0]
                    if w.gen != w.bw._generation:
                        continue  # a stale timer: it will do nothing
                    label = ("wake", w.bw.name)
                elif len(cbs) == 1 and isinstance(cbs[0], SignalAt):
                    label = ("signal", id(cbs[0].core), cbs[0].number)
                else:
                    raise _Void(f"event {type(ev).__name__} {cbs}")
            struct.append((label, prio))
            floats.append(t - now)
        counts = [list(c.exec_counts) for c in m.cores]
        busy = [dict(c.busy) for c in m.cores]
        bws = [(bw.bytes_moved, bw.busy_ns) for bw in self._bandwidths()]
        return (tuple(struct), floats, frames, now, counts, busy, m.executed, bws,
                net.link_bytes_hops(), in_op)

    def _bandwidths(self) -> list:
        m = self.m
        out = list(m.hbm) + [b for b in m.l2 if b is not None]
        return out + list(getattr(m.network, "wires", {}).values())

    @staticmethod
    def _flows(bi: int, bw, now: float, labels: dict, floats: list) -> tuple:  # noqa: ANN001
        out = []
        for c in bw.order:
            if not c.weight:
                continue
            served = c.served + c.rate * (now - bw._last)
            flows = []
            for finish, _seq, f in sorted(c.heap, key=lambda e: (e[0], e[1])):
                flows.append((labels.get(id(f.event)), f.weight))
                floats.append(finish - served)
            out.append((c.cap, c.weight, tuple(flows)))
        return (bi, tuple(out))

    @staticmethod
    def _position(proc, frames: list, now: float) -> tuple:  # noqa: ANN001
        """Where an engine process is: (body, item) per nesting level; loop levels record
        their counter holder so a skip can advance it."""
        gen = proc._generator.gi_yieldfrom  # _engine -> _run / _drain
        pos: list = []
        while gen is not None:
            name = gen.gi_code.co_name
            if name == "_drain":
                pos.append("drain")
                break
            if name == "execute":  # a network instruction: understood at a chip barrier
                gen = gen.gi_yieldfrom
                if gen is None or gen.gi_code.co_name != "_barrier":
                    raise _Void("network transfer")
                pos.append(("net.barrier", gen.gi_frame.f_locals["group"]))
                break
            if name != "_run":
                raise _Void(name)  # inside a network collective: not described
            loc = gen.gi_frame.f_locals
            item = loc["item"]
            if item[0] == LOOP:
                ctr = loc["ctr"]
                frames.append((ctr, ctr[0], item[1], loc["regs"]))
                pos.append(("loop", id(loc["items"]), item[1].pc))
            elif item[0] == RUN:
                pos.append(_Op(("run", id(loc["items"]), item[1][0][0]), loc.get("start", now)))
            elif item[0] == OP:  # the struct compares the first three only
                pos.append(_Op(("op", id(loc["items"]), item[1]), loc.get("start", now)))
            else:
                pos.append(("other", id(loc["items"]), item[1]))
            gen = gen.gi_yieldfrom
        return tuple(pos)

    # ---- matching and skipping --------------------------------------------------------
    def _periods(self, old: tuple, new: tuple) -> int:
        """Whole periods that can be skipped from ``new`` (0: not periodic)."""
        if old[0] != new[0] or old[8] != new[8] or len(old[2]) != len(new[2]):
            return 0
        for a, b in zip(old[1], new[1]):
            if abs(a - b) > ATOL + RTOL * max(abs(a), abs(b)):
                return 0
        period = new[3] - old[3]
        if period <= 0:
            return 0
        k = math.inf
        moved = False
        for (_h0, c0, _l0, _r0), (_h1, c1, loop, _r1) in zip(old[2], new[2]):
            d = c1 - c0
            if d < 0:
                return 0
            if d:
                moved = True
                k = min(k, (loop.count - 1 - c1) // d)
        if not moved or k == math.inf:
            return 0
        m = self.m
        step = new[6] - old[6]
        if step > 0:
            k = min(k, (m.max_instructions - new[6]) // step)
        k = min(k, int((m.max_time_ns - new[3]) // period))
        return max(int(k), 0)

    def _skip(self, old: tuple, new: tuple, k: int) -> None:
        m = self.m
        env = m.env
        shift = k * (new[3] - old[3])
        for (_h0, c0, _l0, _r0), (holder, c1, loop, regs) in zip(old[2], new[2]):
            d = c1 - c0
            if d:
                holder[0] += k * d
                for reg, inc in loop.regs:
                    regs[reg] += k * d * inc
        for core, busy in zip(m.cores, new[9]):
            for e, start in busy:  # an op in flight adds end - start when it ends; one
                if start >= old[3]:  # started in the window stands for its copy k periods
                    core.busy[e] -= shift  # on, already counted by the increments
        for core, a, b, ba, bb in zip(m.cores, old[4], new[4], old[5], new[5]):
            counts = core.exec_counts
            for pc, (x, y) in enumerate(zip(a, b)):
                if y != x:
                    counts[pc] += k * (y - x)
            for e in core.busy:
                core.busy[e] += k * (bb[e] - ba[e])
            if core.dma_tail > env.now:
                core.dma_tail += shift
            if core.vec_tail > env.now:
                core.vec_tail += shift
        m.executed += k * (new[6] - old[6])
        self.saved += k * (new[6] - old[6])
        for bw, (b0, n0), (b1, n1) in zip(self._bandwidths(), old[7], new[7]):
            bw.bytes_moved += k * (b1 - b0)
            bw.busy_ns += k * (n1 - n0)
            bw._last += shift
            bw._due += shift
            bw._timer_at += shift
        env._queue[:] = [(t + shift, p, e, ev) for t, p, e, ev in env._queue]
        env._now += shift
        self.skipped_periods += k
        self.skipped_ns += shift
        STATS.periods += k
        STATS.skips += 1
        STATS.skipped_ns += shift


__all__ = ["STATS", "SignalAt", "SteadyState", "Wake"]
