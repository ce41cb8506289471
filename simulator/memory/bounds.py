"""Static bounds of every memory operand, checked before a run in every mode.

Loops are affine: an address register's offset inside a loop nest lies between the sums of
``min(0, (count - 1) * inc)`` and ``max(0, ...)`` over the enclosing loops that step it. So
the byte range each operand can touch is known before simulating, and an out-of-range SRAM,
accumulator or HBM access is an error up front, naming the instruction.
"""

from __future__ import annotations

from hardware.chip import ChipConfig
from isa.footprint import footprint
from isa.operands import MemRef, Space
from isa.program import Instruction
from simulator.errors import SimError

Ranges = dict[int, tuple[int, int]]  # register -> (lowest, highest) offset


def capacity(chip: ChipConfig, space: Space) -> int:
    return {Space.HBM: chip.hbm.capacity, Space.SRAM: chip.core.sram.capacity,
            Space.ACC: chip.core.acc.capacity}[space]


def check(pc: int, ins: Instruction, ranges: Ranges, chip: ChipConfig) -> None:
    for name, nbytes in footprint(ins):
        ref = ins.operand(name)
        assert isinstance(ref, MemRef)
        lo_off, hi_off = ranges.get(ref.reg, (0, 0)) if ref.reg is not None else (0, 0)
        lo, hi = ref.addr + lo_off, ref.addr + hi_off + nbytes
        cap = capacity(chip, ref.space)
        if lo < 0 or hi > cap:
            where = f" (with a{ref.reg} in {lo_off}..{hi_off})" if ref.reg is not None else ""
            raise SimError(f"pc {pc} ({ins.mnemonic}): operand '{name}' reaches "
                           f"{ref.space.asm_name} [{lo:#x}, {hi:#x}){where}, outside its "
                           f"{cap:#x} bytes")


def widen(ranges: Ranges, regs: tuple[tuple[int, int], ...], count: int) -> Ranges:
    """Register ranges inside a loop body that steps ``regs`` ``count - 1`` times."""
    out = dict(ranges)
    for reg, inc in regs:
        lo, hi = out.get(reg, (0, 0))
        span = (count - 1) * inc
        out[reg] = (lo + min(0, span), hi + max(0, span))
    return out
