"""The bytes each memory operand of an instruction touches, from its fields alone.

Computed once, here, for every consumer: the simulator's static bounds check, the L2 reuse
model and the timing of weight reads. Each table row names its footprint kind
(``OpSpec.footprint``); ``FOOTPRINTS`` maps the kind to the function.
"""

from __future__ import annotations

from collections.abc import Callable

from isa.dtypes import DType
from isa.program import Instruction

Footprint = list[tuple[str, int]]  # (memory operand name, bytes from its address)


def _dma(ins: Instruction) -> Footprint:
    dt = DType(ins["dtype"])
    rows, cols, depth = ins["rows"], ins["cols"], ins["depth"]
    stride = ins["stride"] or cols
    stride2 = ins["stride2"] or rows * stride
    pitch = ins["pitch"] or cols
    far = dt.nbytes((depth - 1) * stride2 + (rows - 1) * stride + cols)
    near = dt.nbytes((depth * rows - 1) * pitch + cols)
    hbm_side, sram_side = ("src", "dst") if ins.mnemonic == "dma.load" else ("dst", "src")
    return [(hbm_side, far), (sram_side, near)]


def _copy(ins: Instruction) -> Footprint:
    n = DType(ins["dtype"]).nbytes(ins["rows"] * ins["cols"])
    return [("dst", n), ("src", n)]


def mm_weight_bytes(ins: Instruction) -> int:
    """Bytes of an ``mm``'s weight tile: dense, or 2:4 values followed by their metadata."""
    k, n, wdt = ins["k"], ins["n"], DType(ins["wdt"])
    if ins.flag("sp24"):
        return wdt.nbytes(k // 2 * n) + k * n // 8
    return wdt.nbytes(k * n)


def _mm(ins: Instruction) -> Footprint:
    m, k, n = ins["m"], ins["k"], ins["n"]
    return [("dst", 4 * m * n), ("a", DType(ins["adt"]).nbytes(m * k)),
            ("w", mm_weight_bytes(ins))]


def _vector(ins: Instruction) -> Footprint:
    rows, cols = ins["rows"], ins["cols"]
    elems = rows * cols
    names = ins.spec.slices
    out_elems = rows if ins.spec.timing == "reduce" else \
        ins["ld"] + rows if ins.spec.timing == "welford" else elems
    fp = [("dst", DType(ins["odt"]).nbytes(out_elems))]
    if "src" in names:
        fp.append(("src", DType(ins["idt"]).nbytes(elems)))
    if "a" in names:
        shape = {0: elems, 1: cols, 2: rows, 3: 1}[ins["bcast"]]
        fp += [("a", DType(ins["adt"]).nbytes(elems)), ("b", DType(ins["bdt"]).nbytes(shape))]
    if "scales" in names:
        g = ins["group"]
        fp.append(("scales", 4 * (rows if g == 0 else rows * max(1, cols // g))))
    if "dy" in names:
        fp.append(("dy", DType(ins["idt"]).nbytes(elems)))
    if "params" in names:
        per = 2 if ins.mnemonic == "v.layernorm" else 1
        fp.append(("params", 4 * (cols * per + (ins.mnemonic in ("v.rmsgrad", "v.lngrad")))))
    if "table" in names:
        size = 4 << DType(ins["idt"]).bits if ins.mnemonic == "v.lut" else 4 * rows * ins["hd"]
        fp.append(("table", size))
    return fp


def _collective(ins: Instruction) -> Footprint:
    n = DType(ins["dtype"]).nbytes(ins["count"])
    return [("dst", n), ("src", n)]


def _p2p(ins: Instruction) -> Footprint:
    return [("src" if ins.mnemonic == "net.send" else "dst", ins["bytes"])]


FOOTPRINTS: dict[str, Callable[[Instruction], Footprint]] = {
    "none": lambda ins: [], "dma": _dma, "copy": _copy, "mm": _mm, "vector": _vector,
    "collective": _collective, "p2p": _p2p,
}


def footprint(ins: Instruction) -> Footprint:
    """(memory operand name, bytes from its address) for each memory operand."""
    return FOOTPRINTS[ins.spec.footprint](ins)
