"""What each instruction computes in functional mode, in its data types.

Every function takes an ``Access`` context (memories of the executing core, effective
addresses already resolved) and reads / writes through it, so the race detector sees every
byte range an instruction touches. Math is fp32 (fp32 / int32 accumulation for ``mm``);
results are rounded and saturated to the output type by ``isa.numerics``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from isa import numerics as nx
from isa import sparsity as sx
from isa.dtypes import DType
from isa.operands import MemRef
from isa.program import Instruction
from isa.table import TABLE
from simulator.functional import refmath as kx
from simulator.functional.access import Access
from simulator.functional.memory import element_offset


def _dma(ctx: Access, ins: Instruction, load: bool) -> None:
    dt = DType(ins["dtype"])
    rows, cols, depth = ins["rows"], ins["cols"], ins["depth"]
    stride = ins["stride"] or cols
    stride2 = ins["stride2"] or rows * stride
    pitch = ins["pitch"] or cols
    hbm_ref, sram_ref = (ctx.mem("src"), ctx.mem("dst")) if load else (ctx.mem("dst"),
                                                                        ctx.mem("src"))
    what = ins.mnemonic
    run = dt.nbytes(cols)
    hbm_starts = [hbm_ref.addr + element_offset(dt, d * stride2 + r * stride, what)
                  for d in range(depth) for r in range(rows)]
    sram_starts = [sram_ref.addr + element_offset(dt, (d * rows + r) * pitch, what)
                   for d in range(depth) for r in range(rows)]
    if load:
        data = ctx.read_rows(hbm_ref, hbm_starts, run)
        ctx.write_rows(sram_ref, sram_starts, run, data)
    else:
        data = ctx.read_rows(sram_ref, sram_starts, run)
        ctx.write_rows(hbm_ref, hbm_starts, run, data)


def _storeadd(ctx: Access, ins: Instruction) -> None:
    """SRAM rows added into HBM rows, in dtype; recorded as commuting adds, not writes."""
    dt = DType(ins["dtype"])
    rows, cols = ins["rows"], ins["cols"]
    stride = ins["stride"] or cols
    pitch = ins["pitch"] or cols
    hbm_ref, sram_ref = ctx.mem("dst"), ctx.mem("src")
    run = dt.nbytes(cols)
    starts = [hbm_ref.addr + element_offset(dt, r * stride, ins.mnemonic) for r in range(rows)]
    src = ctx.read_rows(sram_ref, [sram_ref.addr + element_offset(dt, r * pitch, ins.mnemonic)
                                   for r in range(rows)], run)
    ctx.add_rows(hbm_ref, starts, run, src, dt, rows * cols)


def _norm_grad(fn: Callable[..., np.ndarray]) -> Callable[[Access, Instruction], None]:
    def run(ctx: Access, ins: Instruction) -> None:
        rows, cols, idt = ins["rows"], ins["cols"], DType(ins["idt"])
        x = ctx.load(ctx.mem("src"), idt, rows * cols).reshape(rows, cols)
        dy = ctx.load(ctx.mem("dy"), idt, rows * cols).reshape(rows, cols)
        p = ctx.load(ctx.mem("params"), DType.FP32, cols + 1)
        ctx.store(ctx.mem("dst"), DType(ins["odt"]), fn(x, dy, p[:cols], float(p[-1])))
    return run


def _copy(ctx: Access, ins: Instruction) -> None:
    n = DType(ins["dtype"]).nbytes(ins["rows"] * ins["cols"])
    src, dst = ctx.mem("src"), ctx.mem("dst")
    ctx.write_bytes(dst, ctx.read_bytes(src, n))


def _mm(ctx: Access, ins: Instruction) -> None:
    m, k, n = ins["m"], ins["k"], ins["n"]
    adt, wdt = DType(ins["adt"]), DType(ins["wdt"])
    a = ctx.load(ctx.mem("a"), adt, m * k)
    a = a.reshape(k, m).T if ins.flag("ta") else a.reshape(m, k)
    w_ref = ctx.mem("w")
    if ins.flag("sp24"):
        vals = ctx.load(w_ref, wdt, k // 2 * n).reshape(k // 2, n)
        meta_ref = MemRef(w_ref.space, w_ref.addr + wdt.nbytes(k // 2 * n), w_ref.reg)
        meta = ctx.read_bytes(meta_ref, k * n // 8)
        w = sx.sparse24_expand(vals, meta.reshape(k // 8, n))
    else:
        w = ctx.load(w_ref, wdt, k * n)
        w = w.reshape(n, k).T if ins.flag("tw") else w.reshape(k, n)
    acc_dt = DType.INT32 if not (adt.is_float or wdt.is_float) else DType.FP32
    prod = nx.matmul_acc(a, w, acc_dt)
    dst = ctx.mem("dst")
    if ins.flag("accum"):
        prev = ctx.load(dst, acc_dt, m * n).reshape(m, n)
        prod = (prev.astype(np.int64) + prod) if acc_dt == DType.INT32 else prev + prod
    ctx.store(dst, acc_dt, prod)


def _unary(fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[Access, Instruction], None]:
    def run(ctx: Access, ins: Instruction) -> None:
        rows, cols = ins["rows"], ins["cols"]
        x = ctx.load(ctx.mem("src"), DType(ins["idt"]), rows * cols).reshape(rows, cols)
        ctx.store(ctx.mem("dst"), DType(ins["odt"]), fn(x.astype(np.float32)))
    return run


def _binary(fn: Callable[[np.ndarray, np.ndarray], np.ndarray]):
    shapes = {0: lambda r, c: (r, c), 1: lambda r, c: (1, c), 2: lambda r, c: (r, 1),
              3: lambda r, c: (1, 1)}

    def run(ctx: Access, ins: Instruction) -> None:
        rows, cols = ins["rows"], ins["cols"]
        a = ctx.load(ctx.mem("a"), DType(ins["adt"]), rows * cols).reshape(rows, cols)
        br, bc = shapes[ins["bcast"]](rows, cols)
        b = ctx.load(ctx.mem("b"), DType(ins["bdt"]), br * bc).reshape(br, bc)
        out = fn(a.astype(np.float32), b.astype(np.float32))
        ctx.store(ctx.mem("dst"), DType(ins["odt"]), out)
    return run


def _rows(fn: Callable[..., np.ndarray], third: str | None = None, param: str | None = None):
    """A row op: src [rows, cols] (+ an fp32 table / params operand, + an immediate)."""

    def run(ctx: Access, ins: Instruction) -> None:
        rows, cols = ins["rows"], ins["cols"]
        x = ctx.load(ctx.mem("src"), DType(ins["idt"]), rows * cols).reshape(rows, cols)
        args: list[object] = [x.astype(np.float32)]
        if third:
            args.append(_third(ctx, ins, third, rows, cols))
        if param:
            args.append(ins.operand(param))
        ctx.store(ctx.mem("dst"), DType(ins["odt"]), fn(*args))
    return run


def _third(ctx: Access, ins: Instruction, name: str, rows: int, cols: int) -> np.ndarray:
    ref = ctx.mem(name)
    if name == "scales":
        group = ins["group"]
        n = rows if group == 0 else rows * (cols // group)
        return ctx.load(ref, DType.FP32, n)
    if name == "table":
        half = ins["hd"] // 2
        table = ctx.load(ref, DType.FP32, 2 * rows * half).reshape(rows, 2, half)
        return table.transpose(1, 0, 2)  # [cos, sin] x rows x hd/2
    count = 2 * cols if ins.mnemonic == "v.layernorm" else cols
    return ctx.load(ref, DType.FP32, count)


def _rope(x: np.ndarray, table: np.ndarray, hd: int) -> np.ndarray:
    """Rotary embedding of every head (width hd) of each row; table = cos, sin [rows, hd/2]."""
    rows, cols = x.shape
    heads = x.reshape(rows, cols // hd, hd)
    cos = np.concatenate([table[0], table[0]], axis=1)[:, None, :]
    sin = np.concatenate([table[1], table[1]], axis=1)[:, None, :]
    return kx.rope(heads, cos, sin).reshape(rows, cols)


def run_quant(ctx: Access, ins: Instruction, dequant: bool) -> None:
    rows, cols, group = ins["rows"], ins["cols"], ins["group"]
    idt, odt = DType(ins["idt"]), DType(ins["odt"])
    x = ctx.load(ctx.mem("src"), idt, rows * cols).reshape(rows, cols)
    s = _third(ctx, ins, "scales", rows, cols)
    s = s.reshape(rows) if group == 0 else s.reshape(rows, cols // group)
    out = nx.dequantize(x, s, group) if dequant else nx.quantize(x, s, odt, group)
    ctx.store(ctx.mem("dst"), odt, out)


def run_lut(ctx: Access, ins: Instruction) -> None:
    rows, cols = ins["rows"], ins["cols"]
    idt = DType(ins["idt"])
    codes = ctx.load(ctx.mem("src"), idt, rows * cols).astype(np.int64) % (1 << idt.bits)
    table = ctx.load(ctx.mem("table"), DType.FP32, 1 << idt.bits)
    ctx.store(ctx.mem("dst"), DType(ins["odt"]), table[codes].reshape(rows, cols))


def _welford(ctx: Access, ins: Instruction) -> None:
    """Row sums at dst, row sums of squares ``ld`` elements on (fp32)."""
    rows, cols, ld = ins["rows"], ins["cols"], ins["ld"]
    x = ctx.load(ctx.mem("src"), DType(ins["idt"]), rows * cols).reshape(rows, cols)
    x = x.astype(np.float32)
    dst, odt = ctx.mem("dst"), DType(ins["odt"])
    ctx.store(dst, odt, kx.row_sum(x))
    ctx.store(MemRef(dst.space, dst.addr + odt.nbytes(ld)), odt, kx.row_sum(x * x))


SEMANTICS: dict[str, Callable[[Access, Instruction], None]] = {
    "dma.load": lambda c, i: _dma(c, i, True),
    "dma.store": lambda c, i: _dma(c, i, False),
    "dma.storeadd": _storeadd,
    "v.dsilu": _unary(kx.silu_grad),
    "v.dgelu": _unary(kx.gelu_grad),
    "v.rmsgrad": _norm_grad(kx.rmsnorm_grad),
    "v.lngrad": _norm_grad(kx.layernorm_grad),
    "dma.copy": _copy,
    "dma.memcpy": _copy,
    "mm": _mm,
    "v.exp": _unary(kx.exp), "v.gelu": _unary(kx.gelu), "v.silu": _unary(kx.silu),
    "v.relu": _unary(kx.relu), "v.rsqrt": _unary(kx.rsqrt), "v.recip": _unary(kx.reciprocal),
    "v.cast": _unary(lambda x: x),
    "v.cos": _unary(np.cos), "v.sin": _unary(np.sin),
    "v.add": _binary(np.add), "v.sub": _binary(np.subtract), "v.mul": _binary(np.multiply),
    "v.max": _binary(np.maximum),
    "v.rsum": _rows(lambda x: kx.row_sum(x).reshape(-1, 1)),
    "v.welford": _welford,
    "v.rmax": _rows(lambda x: kx.row_max(x).reshape(-1, 1)),
    "v.scale": _rows(lambda x, s: x * np.float32(s), param="s"),
    "v.adds": _rows(lambda x, s: x + np.float32(s), param="s"),
    "v.softmax": _rows(kx.softmax),
    "v.layernorm": _rows(lambda x, p, eps: kx.layernorm(x, p[:x.shape[1]], p[x.shape[1]:], eps),
                         "params", "eps"),
    "v.rmsnorm": _rows(lambda x, p, eps: kx.rmsnorm(x, p, eps), "params", "eps"),
    "v.rope": _rows(lambda x, t, hd: _rope(x, t, hd), "table", "hd"),
    "v.cmask": _rows(lambda x, off: np.where(
        np.arange(x.shape[1])[None, :] > np.arange(x.shape[0])[:, None] + off, -np.inf, x),
        param="offset"),
    "v.lut": run_lut,
    "v.quant": lambda c, i: run_quant(c, i, False),
    "v.dequant": lambda c, i: run_quant(c, i, True),
}
# Instructions whose effect is not on data: control flow and synchronisation, which the
# core and its engines carry out, and the chip-to-chip moves, which the network model
# carries out (``LinkNetwork.functional``).
BY_CORE = frozenset({"nop", "halt", "loop", "barrier", "sem.signal", "sem.wait",
                     "net.barrier"})
BY_NETWORK = frozenset(s.mnemonic for s in TABLE
                       if s.timing == "network" and s.mnemonic not in BY_CORE)


