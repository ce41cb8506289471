"""The compiled event core: a machine's performance run in C, equal to the SimPy engine.

A performance run (no trace, no functional state, no transfer between chips) spends
nearly all its time in SimPy's event loop: ~1-2 us an instruction. Such a run needs
only each instruction's cost, its engine's stream and the shared bandwidths, so
``fastcore.c`` runs it as a transcription of ``core.CoreSim._run``, ``sync`` and
``memory.bandwidth`` with events ordered as SimPy orders them (time, then the order they
were scheduled). A machine of one chip may hold ``net.barrier`` (a kernel's end: every
core meets, then the chip's kernel gap) and collectives over its group of one (no time), as
``network.base.SingleChipNetwork`` prices them. The SimPy engine stays the reference and
runs everything else: traces, functional mode, systems of several chips, and every run when
the extension was not built or ``RunLimits(compiled=False)`` asks for it.
``tests/simulator/test_compiled.py`` compares the two field by field.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from isa.operands import Engine
from isa.program import Instruction, Program
from simulator.engine.core import STORES
from simulator.engine.dedupe import shapes
from simulator.engine.perprogram import PerProgram
from simulator.engine.streams import (
    BARRIER_ROLE,
    HALT_ROLE,
    LOOP_ROLE,
    SIGNAL_ROLE,
    STREAM_ENGINES,
    WAIT_ROLE,
    role,
    slot,
)
from simulator.errors import BudgetError, DeadlockError, SimError
from simulator.network.base import LoneChipNetwork, SingleChipNetwork

try:
    from simulator.engine import _fastcore
except ImportError:  # not built (no C compiler at install): the SimPy engine runs alone
    _fastcore = None

if TYPE_CHECKING:
    from simulator.engine.core import CoreSim
    from simulator.engine.machine import Machine

AVAILABLE = _fastcore is not None
_FLAT = PerProgram()  # (program, runs) -> its streams as code


def usable(machine: Machine) -> bool:
    """Whether ``machine`` can run compiled: the extension is built, the run asks for it,
    it neither traces nor computes, and its network instructions are one chip's own."""
    if not (AVAILABLE and machine.limits.compiled and machine.trace is None
            and machine.functional is None):
        return False
    if _groups(machine) is None:
        return False
    return not any(_flat(core)[2] for core in machine.cores)  # loops too deep


def _groups(machine: Machine) -> dict[int, int] | None:
    """Each ``net.barrier`` group met -> its barrier's index, when every network
    instruction is one the one-chip network prices (a barrier of every core, a collective
    over group 0); None when one is not (several chips, a send, another group: the SimPy
    engine runs it, and reports what is wrong)."""
    net = [v[3] for known in machine.known_costs for v in known.values()
           if v[3].engine is Engine.NETWORK]
    if not net:
        return {}
    if len(machine.chips) != 1 or not isinstance(machine.network, SingleChipNetwork):
        return None
    lone = isinstance(machine.network, LoneChipNetwork)  # every group is this chip's cores
    groups: dict[int, int] = {}
    for ins in net:
        if ins.mnemonic == "net.barrier":
            if ins["group"] != 0 and not lone:
                return None
            groups.setdefault(ins["group"], len(groups))
        elif ins.mnemonic in ("net.send", "net.recv") or ins["group"] != 0:
            return None
    return groups


def _flat(core: CoreSim) -> tuple[np.ndarray, list[int], bool]:
    """(the core's four streams as one int64 code array, where each starts, whether its
    loops nest deeper than the compiled core keeps), kept per program and fold."""
    runs = core.machine.runs
    seen = _FLAT.get(core.program, runs)
    if seen is None:
        seen = _code(core.program, runs)
        _FLAT.put(core.program, seen, runs)
    return seen  # type: ignore[return-value]


def _code(program: Program, runs: bool) -> tuple[np.ndarray, list[int], bool]:
    """The streams ``streams.engine_streams`` makes as items, written by the extension as
    code from three per-pc arrays: each pc's role (an engine's own op, a loop, a barrier,
    ...) and its two operands (a loop's end and count, a semaphore and the count waited
    for), found once per distinct instruction and gathered by pc."""
    distinct, per_pc = shapes(program)
    role = np.empty(len(distinct), dtype=np.int8)
    a = np.zeros(len(distinct), dtype=np.int64)
    b = np.zeros(len(distinct), dtype=np.int64)
    for u, (_, ins) in enumerate(distinct):
        role[u], a[u], b[u] = _role_of(ins)
    got = _fastcore.stream_code(role[per_pc], a[per_pc], b[per_pc], runs)
    if got[0] is None:
        pc = got[1]
        raise SimError(f"pc {pc}: loop end {program.instructions[pc]['end']} is not inside "
                       f"the enclosing block (loops must nest)")
    code, starts, depth = got
    return np.frombuffer(code, dtype=np.int64), list(starts), depth > _fastcore.MAX_DEPTH


def _role_of(ins: Instruction) -> tuple[int, int, int]:
    """(role, a, b) of one instruction for ``_fastcore.stream_code``."""
    r = role(ins.opcode)
    if r >= 0:
        return r, 0, 0
    if r == LOOP_ROLE:
        return _fastcore.R_LOOP, ins["end"], ins["count"]
    if r == BARRIER_ROLE:
        return _fastcore.R_BARRIER, 0, 0
    if r == HALT_ROLE:
        return _fastcore.R_HALT, 0, 0
    e = slot(ins.engine) if r in (SIGNAL_ROLE, WAIT_ROLE) else None
    if e is None:
        return _fastcore.R_NONE, 0, 0
    if r == SIGNAL_ROLE:
        return _fastcore.R_SIGNAL + e, ins["sem"], 0
    return _fastcore.R_WAIT + e, ins["sem"], ins["count"]


def run(machine: Machine) -> float:
    """Run ``machine`` compiled; fills each core's counts and busy times and the machine's
    instruction count as the SimPy engine would. Returns the simulated time in ns."""
    cores = machine.cores
    flats = [_flat(core) for core in cores]
    code = np.concatenate([f[0] for f in flats]) if flats else np.zeros(0, np.int64)
    base = np.cumsum([0] + [len(f[0]) for f in flats])
    sstart = np.array([base[i] + f[1][e] for i, f in enumerate(flats) for e in range(4)],
                      dtype=np.int64)
    slen = np.array([f[1][e + 1] - f[1][e] for f in flats for e in range(4)], dtype=np.int64)
    # each chip's distinct instructions' costs (``known``, in the order first met), one table
    first = np.cumsum([0] + [len(k) for k in machine.known_costs])
    table = [v[0] for known in machine.known_costs for v in known.values()]
    firsts = [v[3] for known in machine.known_costs for v in known.values()]
    stores = [ins.opcode in STORES for ins in firsts]
    groups = _groups(machine)
    assert groups is not None  # usable() said so
    nets = [-2 if ins.engine is not Engine.NETWORK else
            groups[ins["group"]] if ins.mnemonic == "net.barrier" else -1 for ins in firsts]
    cid = np.concatenate([core.cids + first[core.chip_id] for core in cores]).astype(np.int32) \
        if cores else np.zeros(0, np.int32)
    coff = np.cumsum([0] + [len(core.cids) for core in cores]).astype(np.int64)
    col = lambda name: np.array([getattr(c, name) for c in table], dtype=np.float64)  # noqa: E731
    counts = np.zeros(int(coff[-1]), dtype=np.int64)
    busy = np.zeros(4 * len(cores))
    blocked = np.zeros(16 * len(cores), dtype=np.int64)
    done = np.zeros(4 * len(cores), dtype=np.int8)
    status, now, executed, err_core, err_pc = _fastcore.run(
        code, sstart, slen, cid, coff, col("ns"), col("hbm_bytes"), col("cap"),
        col("hbm_cap"), col("tail_ns"), np.array(stores, dtype=np.int8),
        np.array(nets, dtype=np.int64), np.array([c.chip_id for c in cores], dtype=np.int64),
        np.array([c.weight for c in cores], dtype=np.int64),
        np.array([c.dma_cap for c in cores], dtype=np.float64),
        np.array([c.startup_ns for c in cores], dtype=np.float64),
        np.array([c.gap_ns for c in cores], dtype=np.float64),
        np.array([bw.capacity for bw in machine.hbm], dtype=np.float64),
        np.array([bw.capacity if bw is not None else 0.0 for bw in machine.l2],
                 dtype=np.float64),
        np.array(machine.l2_hits, dtype=np.float64), len(groups),
        sum(c.weight for c in cores), machine.max_instructions, machine.max_time_ns, counts,
        busy, blocked, done)
    machine.executed = executed
    for i, core in enumerate(cores):
        core.exec_counts = counts[coff[i]:coff[i + 1]]
        for e, engine in enumerate(STREAM_ENGINES):
            core.busy[engine] = float(busy[4 * i + e])
            core.done[engine] = bool(done[4 * i + e])
            kind, pc, number, need = blocked[16 * i + 4 * e:16 * i + 4 * e + 4].tolist()
            core.blocked[engine] = (None, ("sem", pc, number, need), ("barrier", pc),
                                    ("peers", pc))[kind]
    if status == _fastcore.BUDGET:
        raise BudgetError(cores[err_core]._budget_message(err_pc))
    if status == _fastcore.DEADLOCK:
        raise DeadlockError(machine._deadlock_report(cores, now))
    return now


__all__ = ["AVAILABLE", "run", "usable"]
