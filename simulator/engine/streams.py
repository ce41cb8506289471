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
from simulator.engine.dedupe import address_fields, addresses, signature
from simulator.engine.timing import Cost, static_cost
from simulator.errors import SimError
from simulator.memory.bounds import check, extents, loop_regs, widen

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


def compile_streams(program: Program, chip: ChipConfig, known: dict | None = None,
                    runs: bool = False, rows: dict | None = None
                    ) -> tuple[dict[Engine, tuple], list[Cost], list[int], list[int]]:
    """Per-engine streams, the static cost of every instruction (indexed by pc), its
    *kind* (the index in ``rows`` of its (engine, counts) pair, so a run's totals are a
    count of executions per kind, ``Machine.totals``, not a sum over every pc) and its
    place in ``known``, which keeps (cost, kind, place) by instruction for the cores of one
    chip (they repeat them; the compiled core reads the costs as one table in that order).
    ``runs`` folds consecutive vector instructions into RUN items."""
    if known is None:
        known = {}
    if rows is None:
        rows = {}
    costs, kinds, places = [], [], []
    for ins in program.instructions:
        hit = known.get(ins)
        if hit is None:
            cost = static_cost(ins, chip)
            key = (ins.engine, cost.counts)
            kind = rows.get(key)
            if kind is None:
                kind = rows[key] = len(rows)
            hit = known[ins] = (cost, kind, len(known))
        costs.append(hit[0])
        kinds.append(hit[1])
        places.append(hit[2])
    checked_bounds(program, chip)
    return _streams(program, runs), costs, kinds, places


KEPT = 16384  # programs a per-program table remembers (entries keep their programs alive)
_STREAMS: dict[tuple[int, bool], tuple[Program, dict]] = {}  # (id, runs) -> (program, streams)
_CHECKED: dict[int, tuple[Program, tuple[int, int, int]]] = {}  # id -> (program, memories)


def _recall(table: dict, key: object, program: Program) -> object:
    """What ``table`` keeps for this very program under ``key`` (None: nothing)."""
    seen = table.get(key)
    return seen[1] if seen is not None and seen[0] is program else None


def _keep(table: dict, key: object, program: Program, value: object) -> None:
    if len(table) > KEPT:
        table.clear()
    table[key] = (program, value)


def _streams(program: Program, runs: bool) -> dict[Engine, tuple]:
    """The per-engine streams of ``program``, compiled once (they hold no costs)."""
    streams = _recall(_STREAMS, (id(program), runs), program)
    if streams is None:
        bodies = _blocks(program.instructions, 0, len(program.instructions))
        streams = {}
        for engine, body in zip(STREAM_ENGINES, bodies):
            body = tuple(body)
            streams[engine] = _runs(body) if runs and engine is Engine.VECTOR else body
        _keep(_STREAMS, (id(program), runs), program, streams)
    return streams


def _sizes(chip: ChipConfig) -> tuple[int, int, int]:
    """What a program's bounds depend on: the memories' sizes (not the clock)."""
    return chip.core.sram.capacity, chip.core.acc.capacity, chip.hbm.capacity


def checked_bounds(program: Program, chip: ChipConfig) -> None:
    """``check_bounds`` once per program and memory sizes (a power-capped run simulates the
    same programs again at other clocks; bounds do not depend on the clock)."""
    sizes = _sizes(chip)
    if _recall(_CHECKED, id(program), program) == sizes:
        return
    check_bounds(program.instructions, 0, len(program.instructions), {}, chip)
    _keep(_CHECKED, id(program), program, sizes)


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


_EXTENTS: dict[int, tuple[Program, object]] = {}  # id -> (program, (sizes, arrays))


def check_alike(programs: Mapping[tuple[int, int], Program],
                chip_of: Callable[[int], ChipConfig]) -> None:
    """Bounds of the cores the identical-cores shortcut does not simulate (their programs
    differ from their class's first only in addresses): the first's operand extents are
    found once (``bounds.extents``), each as a position among the program's address fields;
    each other program's address fields (``dedupe.addresses``, read with its signature)
    are then added to them, a few array operations a program. An operand out of range is
    then checked in full, for the message that names it."""
    firsts: dict[tuple, Program] = {}
    for key in sorted(programs):
        prog = programs[key]
        first = firsts.setdefault((key[0], signature(prog)), prog)
        if first is prog:
            continue
        chip = chip_of(key[0])
        sizes = _sizes(chip)
        if _recall(_CHECKED, id(prog), prog) == sizes:
            continue  # checked before (the same programs at another clock)
        at, lo, hi, cap = _extents_of(first, chip)
        addr = np.asarray(addresses(prog), dtype=np.int64)[at]
        if ((addr + lo) < 0).any() or ((addr + hi) > cap).any():
            ins = prog.instructions
            check_bounds(ins, 0, len(ins), {}, chip)
            raise SimError(f"core {key[1]}: an operand is outside its memory")
        _keep(_CHECKED, id(prog), prog, sizes)


def _extents_of(program: Program, chip: ChipConfig) -> tuple:
    """(position among the address fields, lowest offset, highest offset + bytes,
    capacity) of each memory operand, as arrays; kept per program and memory sizes."""
    sizes = _sizes(chip)
    seen = _recall(_EXTENTS, id(program), program)
    if seen is not None and seen[0] == sizes:
        return seen[1]
    rows: list[tuple[int, int, int, int, int]] = []
    check_bounds(program.instructions, 0, len(program.instructions), {}, chip,
                 lambda pc, ins, ranges, c: extents(pc, ins, ranges, c, rows))
    starts, n = [], 0  # where each instruction's address fields begin
    for ins in program.instructions:
        starts.append(n)
        n += len(address_fields(ins.opcode, ins.spec))
    at = [starts[pc] + address_fields(program.instructions[pc].opcode,
                                      program.instructions[pc].spec).index(f)
          for pc, f, *_ in rows]
    cols = (np.array(at, dtype=np.int64),
            *(np.array([r[k] for r in rows], dtype=np.int64) for k in (2, 3, 4)))
    _keep(_EXTENTS, id(program), program, (sizes, cols))
    return cols


_SLOT = {e: i for i, e in enumerate(STREAM_ENGINES)}


def _blocks(prog: tuple[Instruction, ...], start: int, end: int) -> list[list]:
    """Items for [start, end) of every engine (in ``STREAM_ENGINES`` order), in one walk:
    a loop stays a loop in each engine that has work in its body."""
    out: list[list] = [[] for _ in STREAM_ENGINES]
    slot = _SLOT
    pc = start
    while pc < end:
        ins = prog[pc]
        mn = ins.mnemonic
        if mn == "loop":
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
        if mn == "barrier":
            for items in out:
                items.append((BARRIER, pc))
        elif mn == "halt":
            for items in out:
                items.append((HALT, pc))
        else:
            e = slot.get(ins.engine)
            if e is not None:
                if mn == "sem.signal":
                    out[e].append((SIGNAL, pc, ins["sem"]))
                elif mn == "sem.wait":
                    out[e].append((WAIT, pc, ins["sem"], ins["count"]))
                else:
                    out[e].append((OP, pc, ins))
        pc += 1
    return out


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
