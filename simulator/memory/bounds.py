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
from isa.operands import NUM_AREGS, MemRef, Space
from isa.program import Instruction
from isa.table import BY_MNEMONIC, BY_OPCODE
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
                    per_pc: np.ndarray, starts: np.ndarray, chip: ChipConfig,
                    addr_fields: Callable[[int], tuple[int, ...]]) -> tuple[np.ndarray, ...]:
    """What ``check`` tests, without the addresses: per memory operand, its address field's
    position among the program's address fields (each instruction's, in the table's field
    order, as ``dedupe.addresses`` lists them), its lowest offset, its highest offset +
    bytes and its memory's capacity, as four arrays. A program's operands are then all
    checked by adding its addresses (and so are those of every program that differs from
    it only in addresses). The operands of an instruction are found once per address-free
    signature (``distinct``, the program's, and ``per_pc``, which each pc is:
    ``dedupe.shapes``; ``starts``: where each pc's address fields begin,
    ``dedupe.address_starts``), their offsets from their loop context
    (``loop_contexts``), pc by pc in array operations."""
    caps = (chip.hbm.capacity, chip.core.sram.capacity, chip.core.acc.capacity)
    memo = _OPERANDS
    if len(memo) > MEMO_KEPT:
        memo.clear()
    count_u, loop_u = [], []
    op_k, op_code, op_bytes, op_cap = [], [], [], []
    for sig, first in distinct:
        ops = memo.get(sig)
        if ops is None:
            ops = memo[sig] = _operands(first, addr_fields(first.opcode))
        mems, loop = ops
        count_u.append(len(mems))
        loop_u.append(loop)
        for k, i_reg, nbytes, slot in mems:
            op_k.append(k)
            op_code.append(first.args[i_reg])  # register code (0: none), not an address
            op_bytes.append(nbytes)
            op_cap.append(caps[slot])
    ctx, lo_tab, hi_tab, _ = loop_contexts(prog, np.array(loop_u, dtype=bool)[per_pc])
    cnt = np.array(count_u, dtype=np.int64)[per_pc]  # memory operands at each pc
    total = int(cnt.sum())
    pc_of = np.repeat(np.arange(len(prog)), cnt)
    first_row = (np.cumsum(count_u) - np.array(count_u, dtype=np.int64))[per_pc]
    row = np.repeat(first_row - (np.cumsum(cnt) - cnt), cnt) + np.arange(total)
    at = starts[pc_of] + np.array(op_k, dtype=np.int64)[row]
    code = np.array(op_code, dtype=np.int64)[row]
    c = ctx[pc_of]
    return (at, lo_tab[c, code], hi_tab[c, code] + np.array(op_bytes, dtype=np.int64)[row],
            np.array(op_cap, dtype=np.int64)[row])


def loop_contexts(prog: tuple[Instruction, ...], is_loop: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each pc's loop context (0: outside every loop; a loop's body is the context the loop
    opens), and per context each register's lowest and highest offset (column = register
    code: 0 for none, r + 1 for a_r) and its trip count. ``is_loop`` marks the loops' pcs;
    only they are visited, and a loop that does not nest inside its enclosing one is an
    error, as in ``check_bounds``."""
    return loop_contexts_of([prog], np.array([0, len(prog)]), is_loop)


def loop_contexts_of(progs: list[tuple[Instruction, ...]], starts: np.ndarray,
                     is_loop: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                   np.ndarray]:
    """``loop_contexts`` of several programs laid end to end (program i's pcs from
    ``starts[i]`` to ``starts[i + 1]`` of the arrays), in one pass over their loops:
    context 0 is outside every loop of every program."""
    ctx = np.zeros(int(starts[-1]), dtype=np.int64)
    ranges_of: list[Ranges] = [{}]
    trips = [1]
    loops = np.flatnonzero(is_loop)
    owner = (np.searchsorted(starts, loops, side="right") - 1).tolist()
    outer: list[tuple[int, int]] = []  # enclosing loops: (end, context)
    current = -1
    for at, i in zip(loops.tolist(), owner):
        if i != current:
            current, outer = i, []
        base, n = int(starts[i]), int(starts[i + 1] - starts[i])
        pc = at - base
        while outer and pc >= outer[-1][0]:
            outer.pop()
        ins = progs[i][pc]
        stop, count = ins.args[_END], ins.args[_COUNT]
        if not pc < stop <= (outer[-1][0] if outer else n):
            raise SimError(f"pc {pc}: loop end {stop} is not inside the enclosing block "
                           f"(loops must nest)")
        cur = outer[-1][1] if outer else 0
        ranges_of.append(widen(ranges_of[cur], loop_regs(ins), count))
        trips.append(trips[cur] * count)
        ctx[base + pc + 1:base + stop] = len(ranges_of) - 1
        outer.append((stop, len(ranges_of) - 1))
    lo = np.zeros((len(ranges_of), NUM_AREGS + 1), dtype=np.int64)
    hi = np.zeros_like(lo)
    for k, ranges in enumerate(ranges_of):
        for reg, (a, b) in ranges.items():
            lo[k, reg + 1], hi[k, reg + 1] = a, b
    return ctx, lo, hi, np.array(trips, dtype=np.int64)


def _operands(ins: Instruction, addr_fields: tuple[int, ...]) -> tuple:
    """(((position among its address fields, reg field, bytes, memory slot), ...), whether
    a loop): what ``operand_extents`` needs of an instruction, a function of its
    address-free fields."""
    if ins.mnemonic == "loop":
        return (), True
    mems = []
    for name, nbytes in footprint(ins):
        i_space, i_addr, i_reg = _fields(ins.opcode, name)
        mems.append((addr_fields.index(i_addr), i_reg, nbytes, _SLOT[ins.args[i_space]]))
    return tuple(mems), False


_OPERANDS: dict[tuple, tuple] = {}  # address-free signature -> _operands(...)
_END, _COUNT = BY_MNEMONIC["loop"].index("end"), BY_MNEMONIC["loop"].index("count")
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
