"""Static bounds of every memory operand, checked before a run in every mode.

Loops are affine: an address register's offset inside a loop nest lies between the sums of
``min(0, (count - 1) * inc)`` and ``max(0, ...)`` over the enclosing loops that step it. So
the byte range each operand can touch is known before simulating, and an out-of-range SRAM,
accumulator or HBM access is an error up front, naming the instruction.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from hardware.chip import ChipConfig
from isa.footprint import footprint
from isa.operands import MemRef, Space
from isa.program import Instruction
from isa.table import BY_OPCODE
from simulator.errors import SimError

Ranges = dict[int, tuple[int, int]]  # register -> (lowest, highest) offset


_SLOT = {int(Space.HBM): 0, int(Space.SRAM): 1, int(Space.ACC): 2}


def capacity(chip: ChipConfig, space: Space) -> int:
    return {Space.HBM: chip.hbm.capacity, Space.SRAM: chip.core.sram.capacity,
            Space.ACC: chip.core.acc.capacity}[space]


def _fields(opcode: int, name: str) -> tuple[int, int, int]:
    """Positions of a memory operand's space, addr and reg fields in ``Instruction.args``."""
    key = (opcode, name)
    at = _FIELDS.get(key)
    if at is None:
        spec = BY_OPCODE[opcode]
        at = _FIELDS[key] = (spec.index(f"{name}.space"), spec.index(f"{name}.addr"),
                             spec.index(f"{name}.reg"))
    return at


_FIELDS: dict[tuple[int, str], tuple[int, int, int]] = {}


def check(pc: int, ins: Instruction, ranges: Ranges, chip: ChipConfig,
          fp: list[tuple[str, int]] | None = None) -> None:
    """Each memory operand's bytes inside its memory (raw fields read directly: this runs
    for every instruction of every program, on cache hits too). ``fp``: the instruction's
    footprint, when the caller has it."""
    args = ins.args
    caps = (chip.hbm.capacity, chip.core.sram.capacity, chip.core.acc.capacity)
    for name, nbytes in footprint(ins) if fp is None else fp:
        i_space, i_addr, i_reg = _fields(ins.opcode, name)
        addr, reg = args[i_addr], args[i_reg] - 1
        lo_off, hi_off = ranges.get(reg, (0, 0)) if reg >= 0 else (0, 0)
        lo, hi = addr + lo_off, addr + hi_off + nbytes
        cap = caps[_SLOT[args[i_space]]]
        if lo < 0 or hi > cap:
            ref = ins.operand(name)
            assert isinstance(ref, MemRef)
            where = f" (with a{ref.reg} in {lo_off}..{hi_off})" if ref.reg is not None else ""
            raise SimError(f"pc {pc} ({ins.mnemonic}): operand '{name}' reaches "
                           f"{ref.space.asm_name} [{lo:#x}, {hi:#x}){where}, outside its "
                           f"{cap:#x} bytes")


def operand_extents(prog: tuple[Instruction, ...], distinct: list[tuple[tuple, Instruction]],
                    per_pc: np.ndarray, chip: ChipConfig,
                    addr_fields: Callable[[int], tuple[int, ...]]) -> tuple[list, ...]:
    """What ``check`` tests, without the addresses: per memory operand, its address field's
    position among the program's address fields (each instruction's, in the table's field
    order, as ``dedupe.addresses`` lists them), its lowest offset, its highest offset +
    bytes and its memory's capacity, as four lists. A program's operands are then all
    checked by adding its addresses (and so are those of every program that differs from
    it only in addresses). One pass, loops entered as ``check_bounds`` enters them; the
    operands of an instruction are found once per address-free signature (``distinct``,
    the program's, and ``per_pc``, which each pc is: ``dedupe.shapes``)."""
    caps = (chip.hbm.capacity, chip.core.sram.capacity, chip.core.acc.capacity)
    memo = _OPERANDS
    at: list[int] = []
    lows: list[int] = []
    highs: list[int] = []
    capl: list[int] = []
    if len(memo) > MEMO_KEPT:
        memo.clear()
    found = []
    for sig, first in distinct:
        ops = memo.get(sig)
        if ops is None:
            ops = memo[sig] = _operands(first, addr_fields(first.opcode))
        found.append(ops)
    # where each pc's address fields start among the program's; only the pcs with memory
    # operands or a loop are visited
    fields = np.array([f for f, _, _ in found], dtype=np.int64)[per_pc]
    starts = (np.cumsum(fields) - fields).tolist()
    busy = np.array([bool(m or loop) for _, m, loop in found])[per_pc]
    which = per_pc.tolist()
    ranges: Ranges = {}
    outer: list[tuple[int, Ranges]] = []  # enclosing loops: (end, the ranges outside)
    for pc in np.flatnonzero(busy).tolist():
        while outer and pc >= outer[-1][0]:
            ranges = outer.pop()[1]
        ins = prog[pc]
        _, mems, loop = found[which[pc]]
        args = ins.args
        if loop:
            stop = args[loop[0]]
            if not pc < stop <= (outer[-1][0] if outer else len(prog)):
                raise SimError(f"pc {pc}: loop end {stop} is not inside the enclosing "
                               f"block (loops must nest)")
            outer.append((stop, ranges))
            ranges = widen(ranges, loop_regs(ins), args[loop[1]])
        n_addr = starts[pc]
        for k, i_reg, nbytes, slot in mems:
            reg = args[i_reg] - 1
            lo_off, hi_off = ranges.get(reg, (0, 0)) if reg >= 0 else (0, 0)
            at.append(n_addr + k)
            lows.append(lo_off)
            highs.append(hi_off + nbytes)
            capl.append(caps[slot])
    return at, lows, highs, capl


def _operands(ins: Instruction, addr_fields: tuple[int, ...]) -> tuple:
    """(address fields, ((position among them, reg field, bytes, memory slot), ...),
    (end field, count field) if a loop): what ``operand_extents`` needs of an instruction,
    a function of its address-free fields."""
    if ins.mnemonic == "loop":
        spec = BY_OPCODE[ins.opcode]
        return len(addr_fields), (), (spec.index("end"), spec.index("count"))
    mems = []
    for name, nbytes in footprint(ins):
        i_space, i_addr, i_reg = _fields(ins.opcode, name)
        mems.append((addr_fields.index(i_addr), i_reg, nbytes, _SLOT[ins.args[i_space]]))
    return len(addr_fields), tuple(mems), ()


_OPERANDS: dict[tuple, tuple] = {}  # address-free signature -> _operands(...)
MEMO_KEPT = 1 << 16


def loop_regs(ins: Instruction) -> tuple[tuple[int, int], ...]:
    """A ``loop``'s (register index, increment) pairs, for the registers it steps."""
    return tuple((r - 1, inc) for r, inc in ((ins["r0"], ins["inc0"]),
                                             (ins["r1"], ins["inc1"])) if r)


def widen(ranges: Ranges, regs: tuple[tuple[int, int], ...], count: int) -> Ranges:
    """Register ranges inside a loop body that steps ``regs`` ``count - 1`` times."""
    out = dict(ranges)
    for reg, inc in regs:
        lo, hi = out.get(reg, (0, 0))
        span = (count - 1) * inc
        out[reg] = (lo + min(0, span), hi + max(0, span))
    return out
