"""Static bounds of every memory operand, checked before a run in every mode.

Loops are affine: an address register's offset inside a loop nest lies between the sums of
``min(0, (count - 1) * inc)`` and ``max(0, ...)`` over the enclosing loops that step it. So
the byte range each operand can touch is known before simulating, and an out-of-range SRAM,
accumulator or HBM access is an error up front, naming the instruction.
"""

from __future__ import annotations

from isa.dtypes import DType
from isa.operands import MemRef, Space
from isa.program import Instruction
from simulator.errors import SimError
from simulator.hardware import ChipConfig

Ranges = dict[int, tuple[int, int]]  # register -> (lowest, highest) offset


def footprint(ins: Instruction) -> list[tuple[str, int]]:
    """(memory operand name, bytes from its address) for each memory operand."""
    spec, mn = ins.spec, ins.mnemonic
    if mn in ("dma.load", "dma.store"):
        dt = DType(ins["dtype"])
        rows, cols, depth = ins["rows"], ins["cols"], ins["depth"]
        stride = ins["stride"] or cols
        stride2 = ins["stride2"] or rows * stride
        pitch = ins["pitch"] or cols
        far = dt.nbytes((depth - 1) * stride2 + (rows - 1) * stride + cols)
        near = dt.nbytes((depth * rows - 1) * pitch + cols)
        hbm_side, sram_side = ("src", "dst") if mn == "dma.load" else ("dst", "src")
        return [(hbm_side, far), (sram_side, near)]
    if mn == "dma.copy":
        n = DType(ins["dtype"]).nbytes(ins["rows"] * ins["cols"])
        return [("dst", n), ("src", n)]
    if mn == "mm":
        m, k, n = ins["m"], ins["k"], ins["n"]
        wdt = DType(ins["wdt"])
        w = wdt.nbytes(k // 2 * n) + k * n // 8 if ins["flags"] & 8 else wdt.nbytes(k * n)
        return [("dst", 4 * m * n), ("a", DType(ins["adt"]).nbytes(m * k)), ("w", w)]
    if mn.startswith("v."):
        return _vector(ins)
    if mn.startswith("net.") and "count" in spec.slices:
        n = DType(ins["dtype"]).nbytes(ins["count"])
        return [("dst", n), ("src", n)]
    if mn in ("net.send", "net.recv"):
        return [("src" if mn == "net.send" else "dst", ins["bytes"])]
    return []


def _vector(ins: Instruction) -> list[tuple[str, int]]:
    rows, cols = ins["rows"], ins["cols"]
    elems = rows * cols
    names = [o.name for o in ins.spec.operands]
    out_elems = rows if ins.mnemonic in ("v.rsum", "v.rmax") else elems
    fp = [("dst", DType(ins["odt"]).nbytes(out_elems))]
    if "src" in names:
        fp.append(("src", DType(ins["idt"]).nbytes(elems)))
    if "a" in names:
        shape = {0: elems, 1: cols, 2: rows, 3: 1}[ins["bcast"]]
        fp += [("a", DType(ins["adt"]).nbytes(elems)), ("b", DType(ins["bdt"]).nbytes(shape))]
    if "scales" in names:
        g = ins["group"]
        fp.append(("scales", 4 * (rows if g == 0 else rows * max(1, cols // g))))
    if "params" in names:
        fp.append(("params", 4 * cols * (2 if ins.mnemonic == "v.layernorm" else 1)))
    if "table" in names:
        size = 4 << DType(ins["idt"]).bits if ins.mnemonic == "v.lut" else 4 * rows * ins["hd"]
        fp.append(("table", size))
    return fp


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
