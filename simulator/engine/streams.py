"""Split a core's program into one instruction stream per engine, keeping loops as loops.

Each engine walks only its own stream, so dispatch costs nothing per foreign instruction;
a loop stays a loop (its body filtered to the engine), so a million dynamic instructions
need only the static program in memory. ``barrier`` and ``halt`` appear in every stream.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from hardware.chip import ChipConfig
from isa.operands import Engine
from isa.program import Instruction, Program
from isa.table import BY_OPCODE
from simulator.engine.dedupe import address_fields, address_starts, addresses, identity, shapes
from simulator.engine.perprogram import PerProgram
from simulator.engine.timing import Cost, static_cost
from simulator.errors import SimError
from simulator.memory.bounds import check, loop_regs, operand_extents, widen

STREAM_ENGINES = (Engine.DMA, Engine.MATRIX, Engine.VECTOR, Engine.NETWORK)
OP, LOOP, SIGNAL, WAIT, BARRIER, HALT, RUN = range(7)
# OP items are (OP, pc, instruction): the cost is the machine's, looked up by pc, so a
# program's streams do not depend on the clock and are compiled once for every run of it
# (a power-capped kernel runs at several clocks).
# RUN: consecutive vector instructions with nothing between them ((pc, ins), ...): no
# other engine can see the vector engine between them (they touch no shared bandwidth, no
# semaphore), so one timeout covers the run, each op's end (and result latency) computed on
# the way; only when a run is neither traced nor functional, which see every instruction.


@dataclass(frozen=True)
class Loop:
    pc: int
    count: int
    body: tuple
    regs: tuple[tuple[int, int], ...]  # (register, increment) pairs


def compile_costs(program: Program, chip: ChipConfig, known: dict | None = None,
                  rows: dict | None = None
                  ) -> tuple[list[Cost], np.ndarray, np.ndarray, np.ndarray]:
    """The static cost of each distinct instruction of the program and each pc's index
    among them (``Core.costs`` gathers them by pc when the SimPy engine asks), each pc's
    *kind* (the index in ``rows`` of its (engine, counts) pair, so a run's totals are a
    count of executions per kind, ``Machine.totals``, not a sum over every pc) and its
    place in ``known``, which keeps (cost, kind, place, instruction) by the instruction's
    address-free signature for the cores of one chip (an instruction's cost never depends
    on an address, ``dedupe``; the compiled core reads the costs as one table in that
    order). Costs are found once per distinct signature of the program, not per pc; the
    program's bounds are checked on the way."""
    if known is None:
        known = {}
    if rows is None:
        rows = {}
    distinct, per_pc = shapes(program)
    ucost, ukind, uplace = [], [], []
    for sig, ins in distinct:
        hit = known.get(sig)
        if hit is None:
            cost = static_cost(ins, chip)
            key = (ins.engine, cost.counts)
            kind = rows.get(key)
            if kind is None:
                kind = rows[key] = len(rows)
            hit = known[sig] = (cost, kind, len(known), ins)
        ucost.append(hit[0])
        ukind.append(hit[1])
        uplace.append(hit[2])
    checked_bounds(program, chip)
    return (ucost, per_pc, np.asarray(ukind, dtype=np.int64)[per_pc],
            np.asarray(uplace, dtype=np.int64)[per_pc])


_STREAMS = PerProgram()  # (program, runs) -> streams
_CHECKED = PerProgram()  # program -> the memory sizes it was checked against


def engine_streams(program: Program, runs: bool) -> dict[Engine, tuple]:
    """The per-engine streams of ``program`` as items (the SimPy engine walks them),
    compiled once (they hold no costs). ``runs`` folds consecutive vector instructions
    into RUN items. The compiled core writes the same items as code without them
    (``compiled._code``)."""
    streams = _STREAMS.get(program, runs)
    if streams is None:
        bodies = _blocks(program.instructions, 0, len(program.instructions))
        streams = {}
        for engine, body in zip(STREAM_ENGINES, bodies):
            body = tuple(body)
            streams[engine] = _runs(body) if runs and engine is Engine.VECTOR else body
        _STREAMS.put(program, streams, runs)
    return streams


def _sizes(chip: ChipConfig) -> tuple[int, int, int]:
    """What a program's bounds depend on: the memories' sizes (not the clock)."""
    return chip.core.sram.capacity, chip.core.acc.capacity, chip.hbm.capacity


def checked_bounds(program: Program, chip: ChipConfig) -> None:
    """Every memory operand of ``program`` inside its memory: its operand extents
    (``_extents_of``, kept for the programs that differ from it only in addresses,
    ``check_alike``) plus its addresses, checked as arrays; once per program and memory
    sizes (a power-capped run simulates the same programs again at other clocks; bounds do
    not depend on the clock). An operand out of range is checked in full, for the message
    that names it."""
    sizes = _sizes(chip)
    if _CHECKED.get(program) == sizes:
        return
    _within(program, _extents_of(program, chip), chip, "")
    _CHECKED.put(program, sizes)


def _within(program: Program, extents: tuple, chip: ChipConfig, who: str) -> None:
    """``program``'s addresses added to ``extents`` (another program's of its signature, or
    its own), each operand against its memory; on one out of range, the full walk's
    message (prefixed by ``who``)."""
    at, lo, hi, cap = extents
    if not len(at):
        return
    addr = np.asarray(addresses(program), dtype=np.int64)[at]
    if ((addr + lo) < 0).any() or ((addr + hi) > cap).any():
        ins = program.instructions
        try:
            check_bounds(ins, 0, len(ins), {}, chip)
        except SimError as exc:
            raise SimError(who + str(exc)) from None
        raise SimError(f"{who}an operand is outside its memory")


def check_bounds(prog: tuple[Instruction, ...], start: int, end: int, ranges: dict,
                 chip: ChipConfig, visit=check) -> None:  # noqa: ANN001
    """Every memory operand inside its memory, over all values its registers take
    (``visit(pc, ins, ranges, chip)`` on each instruction outside a loop header)."""
    pc = start
    while pc < end:
        ins = prog[pc]
        if ins.mnemonic == "loop":
            stop = ins["end"]
            if not pc < stop <= end:
                raise SimError(f"pc {pc}: loop end {stop} is not inside the enclosing block "
                               f"(loops must nest)")
            regs = loop_regs(ins)
            check_bounds(prog, pc + 1, stop, widen(ranges, regs, ins["count"]), chip, visit)
            pc = stop
            continue
        visit(pc, ins, ranges, chip)
        pc += 1


_EXTENTS = PerProgram()  # program -> (sizes, arrays)


def check_alike(programs: Mapping[tuple[int, int], Program],
                chip_of: Callable[[int], ChipConfig]) -> None:
    """Bounds of the cores the identical-cores shortcut does not simulate (their programs
    differ from their class's first only in addresses): the first's operand extents are
    found once (``bounds.operand_extents``), each as a position among the program's address fields;
    each other program's address fields (``dedupe.addresses``, read with its signature)
    are then added to them, a few array operations a program. An operand out of range is
    then checked in full, for the message that names it."""
    firsts: dict[tuple, Program] = {}
    for key in sorted(programs):
        prog = programs[key]
        first = firsts.setdefault((key[0], identity(prog)), prog)
        if first is prog:
            continue
        chip = chip_of(key[0])
        sizes = _sizes(chip)
        if _CHECKED.get(prog) == sizes:
            continue  # checked before (the same programs at another clock)
        _within(prog, _extents_of(first, chip), chip, f"core {key[1]}: ")
        _CHECKED.put(prog, sizes)


def _extents_of(program: Program, chip: ChipConfig) -> tuple:
    """(position among the address fields, lowest offset, highest offset + bytes,
    capacity) of each memory operand, as arrays (``bounds.operand_extents``); kept per
    program and memory sizes."""
    sizes = _sizes(chip)
    seen = _EXTENTS.get(program)
    if seen is not None and seen[0] == sizes:
        return seen[1]
    distinct, per_pc = shapes(program)
    cols = operand_extents(program.instructions, distinct, per_pc, address_starts(program),
                           chip, address_fields)
    _EXTENTS.put(program, (sizes, cols))
    return cols


_SLOT = {e: i for i, e in enumerate(STREAM_ENGINES)}


def _blocks(prog: tuple[Instruction, ...], start: int, end: int) -> list[list]:
    """Items for [start, end) of every engine (in ``STREAM_ENGINES`` order), in one walk:
    a loop stays a loop in each engine that has work in its body."""
    out: list[list] = [[] for _ in STREAM_ENGINES]
    roles = _ROLES
    pc = start
    while pc < end:
        ins = prog[pc]
        role = roles.get(ins.opcode)
        if role is None:
            role = _role(ins.opcode)
        if role >= 0:  # an engine's own instruction: the common case
            out[role].append((OP, pc, ins))
            pc += 1
            continue
        if role == LOOP_ROLE:
            stop = ins["end"]
            if not pc < stop <= end:
                raise SimError(f"pc {pc}: loop end {stop} is not inside the enclosing block "
                               f"(loops must nest)")
            bodies = _blocks(prog, pc + 1, stop)
            regs = loop_regs(ins)
            for items, body in zip(out, bodies):
                if body:
                    items.append((LOOP, Loop(pc, ins["count"], tuple(body), regs)))
            pc = stop
            continue
        if role == BARRIER_ROLE:
            for items in out:
                items.append((BARRIER, pc))
        elif role == HALT_ROLE:
            for items in out:
                items.append((HALT, pc))
        elif role in (SIGNAL_ROLE, WAIT_ROLE):
            e = _SLOT.get(ins.engine)
            if e is not None:
                if role == SIGNAL_ROLE:
                    out[e].append((SIGNAL, pc, ins["sem"]))
                else:
                    out[e].append((WAIT, pc, ins["sem"], ins["count"]))
        pc += 1
    return out


# What an opcode is to the stream split: an engine's slot (>= 0) or one of these.
LOOP_ROLE, BARRIER_ROLE, HALT_ROLE, SIGNAL_ROLE, WAIT_ROLE, NO_ROLE = -1, -2, -3, -4, -5, -6
_ROLES: dict[int, int] = {}


def role(opcode: int) -> int:
    """What an opcode is to the stream split (``*_ROLE``, or an engine's slot)."""
    got = _ROLES.get(opcode)
    return got if got is not None else _role(opcode)


def slot(engine: Engine | None) -> int | None:
    """An engine's place among ``STREAM_ENGINES`` (None: it has no stream)."""
    return _SLOT.get(engine)


def _role(opcode: int) -> int:
    spec = BY_OPCODE[opcode]
    role = {"loop": LOOP_ROLE, "barrier": BARRIER_ROLE, "halt": HALT_ROLE,
            "sem.signal": SIGNAL_ROLE, "sem.wait": WAIT_ROLE}.get(spec.mnemonic)
    if role is None:  # an engine's own, or nobody's (nop, control)
        role = _SLOT.get(spec.engine, NO_ROLE) if spec.engine is not None else NO_ROLE
    _ROLES[opcode] = role
    return role


def _runs(items: tuple) -> tuple:
    """``items`` with every stretch of two or more consecutive OPs made one RUN (loop bodies
    too)."""
    out: list = []
    stretch: list = []

    def flush() -> None:
        if len(stretch) > 1:
            out.append((RUN, tuple((it[1], it[2]) for it in stretch)))
        else:
            out.extend(stretch)
        stretch.clear()
    for it in items:
        if it[0] == OP:
            stretch.append(it)
            continue
        flush()
        if it[0] == LOOP:
            loop = it[1]
            it = (LOOP, Loop(loop.pc, loop.count, _runs(loop.body), loop.regs))
        out.append(it)
    flush()
    return tuple(out)
