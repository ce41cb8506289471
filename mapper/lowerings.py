"""How each graph op becomes per-core instructions: one registered function per op.

``LOWERINGS`` maps ``mapper.ops.Op`` to a function ``(ctx, node) -> per-core item lists``
(``None`` for views, which move no data); ``@lowers(Op.X)`` registers one. Adding an op is
its enum member and attributes type in ``mapper.ops`` and one function here;
``tests/mapper/test_ir.py`` fails for an op without a lowering.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from hardware.chip import ChipConfig
from isa import DataSegment, DType, build
from isa.errors import TesseraError
from mapper.emit import Item, hbm, sram
from mapper.graph import Graph, Node
from mapper.kernels.attention import Attention, attention_programs, regions
from mapper.kernels.gemm import Gemm, Tiling, gemm_programs, k_splits
from mapper.kernels.rowstream import RowStream, chunk_of, stream_programs
from mapper.kernels.rowstream import fit as fit_stream
from mapper.kernels.rowwise import (
    Param,
    RowKernel,
    View,
    absmax_scale_op,
    act_op,
    add_op,
    column_block,
    concat_programs,
    norm_op,
    quant_rows_op,
    rms_scale_op,
    rope_op,
    row_programs,
    silu_mul_op,
    sram_bytes,
    sum_op,
    warp_softmax,
)
from mapper.ops import VIEWS, ActAttrs, Op

MAX_ROWS_PER_TILE = 128  # rows of a row-wise tile at most (fewer when SRAM or rows are short)
TILES_PER_CORE = 4  # row-wise tiles each core aims for, so DMA and math overlap


class MappingError(TesseraError, ValueError):
    """The graph cannot be mapped onto this chip (e.g. a tile that fits nowhere)."""


@dataclass
class Ctx:
    """What a lowering reads: the graph, the chip, each tensor's HBM address and each
    GEMM's tiling (and, in functional mode, the weights and the data segments to fill)."""

    graph: Graph
    chip: ChipConfig
    addr: dict[str, int]
    tilings: dict[str, Tiling]
    weights: dict[str, np.ndarray] | None
    segments: list[DataSegment]
    scratch: int = 0  # an HBM address past every tensor (split-K's partial sums go there)
    boundary: tuple = ()  # the kernel boundary (a sync), between a kernel's two phases


Programs = list[list[Item]] | None
LOWERINGS: dict[Op, Callable[[Ctx, Node], Programs]] = {}


def lowers(*ops: Op) -> Callable:
    """Register the decorated function as the lowering of ``ops``."""
    def register(fn: Callable[[Ctx, Node], Programs]) -> Callable[[Ctx, Node], Programs]:
        for op in ops:
            assert op not in LOWERINGS, f"two lowerings for {op}"
            LOWERINGS[op] = fn
        return fn
    return register


def kernel(ctx: Ctx, node: Node) -> Programs:
    """The per-core programs of one node (None: a view, no data moves)."""
    fn = LOWERINGS.get(node.op)
    if fn is None:
        raise MappingError(f"no lowering for op '{node.op}' ({node.name})")
    return fn(ctx, node)


def gemm_of(graph: Graph, node: Node, addr: dict[str, int], t: Tiling) -> Gemm:
    """The GEMM a LINEAR node runs (addresses 0 where ``addr`` has none yet)."""
    a, w = graph.tensors[node.inputs[0]], graph.tensors[node.inputs[1]]
    out = graph.tensors[node.outputs[0]]
    at = addr.get
    x = node.attrs

    def ref(name: str | None) -> int | None:
        return at(name, 0) if name else None
    m, k = (a.shape[1], a.shape[0]) if x.a_trans else a.shape
    if x.group_rows:  # MoE experts: consecutive row groups, each with its own W
        n = w.shape[1]
        return Gemm(m=m, k=k, n=n, a=at(a.name, 0), w=at(w.name, 0), c=at(out.name, 0),
                    adt=a.dtype, wdt=w.dtype, cdt=out.dtype, w_layout="row", name=node.name,
                    groups=len(x.group_rows), w_stride=w.dtype.nbytes(k * n),
                    group_rows=tuple(x.group_rows), scale=ref(x.scale),
                    row_scale=ref(x.row_scale))
    if x.groups > 1:  # batched: group q's K columns of A, K rows of W, N columns of C
        k //= x.groups
        n = w.shape[1]
        return Gemm(m=m, k=k, n=n, a=at(a.name, 0), w=at(w.name, 0), c=at(out.name, 0),
                    adt=a.dtype, wdt=w.dtype, cdt=out.dtype, lda=k * x.groups,
                    ldc=n * x.groups, w_layout="row", name=node.name, groups=x.groups,
                    a_stride=a.dtype.nbytes(k), w_stride=w.dtype.nbytes(k * n),
                    c_stride=out.dtype.nbytes(n))
    return Gemm(
        m=m, k=k, n=w.shape[0] if x.w_trans else w.shape[1], a=at(a.name, 0), w=at(w.name, 0),
        c=at(out.name, 0), adt=a.dtype, wdt=w.dtype, cdt=out.dtype, act=x.act,
        bias=at(node.inputs[2], 0) if x.bias else None, scale=ref(x.scale),
        residual=ref(x.residual), row_scale=ref(x.row_scale), sparse=x.sparse,
        decode=x.decode, table=ref(x.table), group=x.group,
        w_layout="col" if x.w_trans else x.w_layout, a_trans=x.a_trans,
        accumulate=x.residual is not None and x.residual == node.outputs[0], name=node.name)


# ---- data movement and matrices ---------------------------------------------------------------

@lowers(*VIEWS)
def _view(ctx: Ctx, node: Node) -> Programs:
    return None  # the same bytes under another name: nothing moves


@lowers(Op.LINEAR)
def _linear(ctx: Ctx, node: Node) -> Programs:
    t = ctx.tilings[node.name]
    return gemm_kernel(gemm_of(ctx.graph, node, ctx.addr, t), t, ctx.chip, ctx.scratch,
                       ctx.boundary)


def gemm_kernel(g: Gemm, t: Tiling, chip: ChipConfig, scratch: int,
                boundary: tuple) -> list[list[Item]]:
    """A GEMM's per-core programs; split-K (``k_splits``) runs in two phases: every core
    computes one tile's partial sums over its K range into fp32 scratch, then, after a
    chip-wide sync (a second kernel on a GPU), the parts are summed row-wise and cast."""
    g = replace(g, window=-(-chip.core.dma.gemm_window // 1024))  # the ISA's unit is KiB
    parts = k_splits(g, t, chip.cores)
    if parts == 1:
        return gemm_programs(g, t, chip.cores)
    steps_all = -(-g.k // t.tk)
    tiles = -(-g.m // t.tm) * -(-g.n // t.tn)
    f32, plane = DType.FP32, 4 * g.m * g.n
    first: list[list[Item]] = []
    for part in range(parts):
        k0 = part * steps_all // parts
        k1 = (part + 1) * steps_all // parts
        sub = replace(g, c=scratch + part * plane, cdt=f32, ldc=g.n, k_first=k0,
                      k_count=k1 - k0)
        first += gemm_programs(sub, t, tiles)
    views = tuple(View(scratch + part * plane, g.n, f32) for part in range(parts))
    out = View(g.c, g.n, g.cdt, g.ldc)
    second = _rowwise(RowKernel(g.m, views, out, _sum_parts(g.n, g.cdt, parts), (),
                                MAX_ROWS_PER_TILE, g.name + ".splitk",
                                lambda c: _sum_parts(c, g.cdt, parts)), chip)
    return [(first[c] if c < len(first) else []) + list(boundary)
            + (second[c] if c < len(second) else []) for c in range(chip.cores)]


def _sum_parts(cols: int, cdt: DType, parts: int):  # noqa: ANN202
    """The parts' fp32 rows summed into the first input buffer, then cast to C's type."""
    f32 = DType.FP32

    def op(out, ins, params, rows):  # noqa: ANN001
        seq = [build("v.add", ins[0], ins[0], x, rows, cols, f32, f32, f32) for x in ins[1:]]
        return seq + [build("v.cast", out, ins[0], rows, cols, cdt, f32)]
    return op


@lowers(Op.ALLTOALL)
def _alltoall(ctx: Ctx, node: Node) -> Programs:
    """One core exchanges the blocks with the group's chips."""
    g, addr = ctx.graph, ctx.addr
    src, dst = g.tensors[node.inputs[0]], g.tensors[node.outputs[0]]
    return [[build("net.alltoall", hbm(addr[dst.name]), hbm(addr[src.name]),
                   src.elements // node.attrs.ep, src.dtype, node.attrs.group)]]


@lowers(Op.ALLREDUCE)
def _allreduce(ctx: Ctx, node: Node) -> Programs:
    """One core of the chip all-reduces the buffer in place."""
    t = ctx.graph.tensors[node.inputs[0]]
    ref = hbm(ctx.addr[t.name])
    return [[build("net.allreduce", ref, ref, t.elements, t.dtype, node.attrs.group)]]


@lowers(Op.ALLGATHER)
def _allgather(ctx: Ctx, node: Node) -> Programs:
    """One core gathers every rank's part (its own is ``inputs[0]``) into the output."""
    src, dst = (ctx.graph.tensors[n] for n in (node.inputs[0], node.outputs[0]))
    return [[build("net.allgather", hbm(ctx.addr[dst.name]), hbm(ctx.addr[src.name]),
                   node.attrs.count or src.elements, src.dtype, node.attrs.group)]]


@lowers(Op.REDUCESCATTER)
def _reducescatter(ctx: Ctx, node: Node) -> Programs:
    """One core reduces the group's partial sums, keeping this rank's rows."""
    src, dst = (ctx.graph.tensors[n] for n in (node.inputs[0], node.outputs[0]))
    return [[build("net.reducescatter", hbm(ctx.addr[dst.name]), hbm(ctx.addr[src.name]),
                   dst.elements, src.dtype, node.attrs.group)]]


# ---- row-wise kernels -------------------------------------------------------------------------

@lowers(Op.SUM_COPIES)
def _sum_copies(ctx: Ctx, node: Node) -> Programs:
    g, addr = ctx.graph, ctx.addr
    back, res, out = (g.tensors[n] for n in (*node.inputs[:2], node.outputs[0]))
    rows, cols, k = out.shape[0], out.shape[1], node.attrs.copies
    views = tuple(View(addr[back.name] + back.dtype.nbytes(j * rows * cols), cols,
                       back.dtype) for j in range(k)) + (View(addr[res.name], cols,
                                                              res.dtype),)
    kern = RowKernel(rows, views, View(addr[out.name], cols, out.dtype),
                     sum_op(cols, out.dtype, k + 1), (), MAX_ROWS_PER_TILE, node.name,
                     lambda c: sum_op(c, out.dtype, k + 1))
    return _rowwise(kern, ctx.chip)


@lowers(Op.NORM)
def _norm(ctx: Ctx, node: Node) -> Programs:
    g, addr = ctx.graph, ctx.addr
    x, out = g.tensors[node.inputs[0]], g.tensors[node.outputs[0]]
    a = node.attrs
    if a.segment:  # per-head norms over a column range, in place: a tile's rows x cols
        cols, seg, e = a.cols, a.segment, x.dtype.nbytes(1)  # are rows x heads of seg
        view = View(addr[x.name] + a.col0 * e, cols, x.dtype, x.shape[1])
        base = norm_op(a.kind, seg, x.dtype, x.dtype, a.eps)
        k = RowKernel(x.shape[0], (view,), view,
                      lambda o, i, p, rows: base(o, i, p, rows * (cols // seg)),
                      (Param(addr[node.inputs[1]], seg),), MAX_ROWS_PER_TILE, node.name)
        return _rowwise(k, ctx.chip)
    cols = x.shape[1]
    k = RowKernel(x.shape[0], (View(addr[x.name], cols, x.dtype),),
                  View(addr[out.name], cols, out.dtype),
                  norm_op(node.attrs.kind, cols, x.dtype, out.dtype, node.attrs.eps),
                  (Param(addr[node.inputs[1]], g.tensors[node.inputs[1]].shape[0]),),
                  MAX_ROWS_PER_TILE, node.name, latency_rows=_in_flight(ctx.chip))
    if _streams(k, a.stream, ctx.chip):
        return _stream(ctx, RowStream(a.kind, k.rows, k.inputs[0], k.out,
                                      addr[node.inputs[1]], a.eps))
    return _rowwise(k, ctx.chip)


def _in_flight(chip: ChipConfig) -> int:
    """Rows a core's row-wise tile holds at least on a chip with lane groups (a GPU keeps a
    kernel's row blocks resident together, not in turns): what hides a group's issue
    latency, a warp per row (``RowKernel.latency_rows``); 0 elsewhere."""
    v = chip.core.vector
    return math.ceil(v.lanes // v.group_lanes * v.issue_rows) if v.group_lanes else 0


def _streams(k: RowKernel, asked: bool, chip: ChipConfig) -> bool:
    """Stream a whole-row op chunk by chunk (``mapper.kernels.rowstream``) when the graph
    asks for it as a GPU library runs it and the row is wider than the registers, or when
    not even one row fits the SRAM to be staged."""
    wide = k.inputs[0].cols > (chip.core.vector.row_elems or k.inputs[0].cols)
    staged = sram_bytes(replace(k, rows_per_tile=1, buffers=1))
    return (asked and wide) or staged > chip.core.sram.capacity


def _stream(ctx: Ctx, k: RowStream) -> Programs:
    chip = ctx.chip
    k = replace(k, chunk=chunk_of(k.cols, chip.core.vector.row_elems))
    try:
        k = fit_stream(k, chip.core.sram.capacity, chip.cores)
    except ValueError as exc:
        raise MappingError(str(exc)) from None
    return stream_programs(k, chip.cores)


@lowers(Op.ROPE)
def _rope(ctx: Ctx, node: Node) -> Programs:
    qkv = ctx.graph.tensors[node.inputs[0]]
    a = node.attrs
    view = View(ctx.addr[qkv.name], a.cols, qkv.dtype, qkv.shape[1])
    k = RowKernel(qkv.shape[0], (view,), view, rope_op(a.cols, a.hd, qkv.dtype),
                  (Param(ctx.addr[node.inputs[1]], a.hd, per_row=True),),
                  MAX_ROWS_PER_TILE, node.name)
    return _rowwise(k, ctx.chip)


@lowers(Op.SILU_MUL)
def _silu_mul(ctx: Ctx, node: Node) -> Programs:
    g, addr = ctx.graph, ctx.addr
    gu, out = g.tensors[node.inputs[0]], g.tensors[node.outputs[0]]
    f = node.attrs.ffn
    e = gu.dtype.nbytes(1)
    k = RowKernel(gu.shape[0], (View(addr[gu.name], f, gu.dtype, 2 * f),
                                View(addr[gu.name] + f * e, f, gu.dtype, 2 * f)),
                  View(addr[out.name], f, out.dtype), silu_mul_op(f, out.dtype),
                  (), MAX_ROWS_PER_TILE, node.name, lambda c: silu_mul_op(c, out.dtype))
    return _rowwise(k, ctx.chip)


def _scale_column(ctx: Ctx, node: Node, op) -> Programs:  # noqa: ANN001
    """A per-row fp32 column computed from each row (rms or absmax scale)."""
    g, addr = ctx.graph, ctx.addr
    x, out = g.tensors[node.inputs[0]], g.tensors[node.outputs[0]]
    k = RowKernel(x.shape[0], (View(addr[x.name], x.shape[1], x.dtype),),
                  View(addr[out.name], 1, DType.FP32), op(x.shape[1], x.dtype),
                  (Param(addr[node.inputs[1]], 1),), MAX_ROWS_PER_TILE, node.name)
    return _rowwise(k, ctx.chip)


@lowers(Op.RMS_SCALE)
def _rms_scale(ctx: Ctx, node: Node) -> Programs:
    return _scale_column(ctx, node, rms_scale_op)


@lowers(Op.ACT_SCALE)
def _act_scale(ctx: Ctx, node: Node) -> Programs:
    return _scale_column(ctx, node, lambda c, dt: absmax_scale_op(c, dt, node.attrs.qmax))


@lowers(Op.ACT_QUANT)
def _act_quant(ctx: Ctx, node: Node) -> Programs:
    g, addr = ctx.graph, ctx.addr
    x, out = g.tensors[node.inputs[0]], g.tensors[node.outputs[0]]
    cols = x.shape[1]
    k = RowKernel(x.shape[0], (View(addr[x.name], cols, x.dtype),),
                  View(addr[out.name], cols, out.dtype),
                  quant_rows_op(cols, x.dtype, out.dtype),
                  (Param(addr[node.inputs[1]], 1, per_row=True),),
                  MAX_ROWS_PER_TILE, node.name,
                  lambda c: quant_rows_op(c, x.dtype, out.dtype))
    return _rowwise(k, ctx.chip)


FLAT_ALIGN = 64  # elements: a flattened row is a multiple of this (whole 128-byte lines)


def flat_rows(rows: int, cols: int, cores: int) -> tuple[int, int]:
    """The [rows, cols] an element-wise kernel over contiguous tensors runs as. A GPU's
    element-wise kernel sees a flat range of elements dealt to blocks over every core,
    whatever the rows: a few wide rows (one row of 16384) fill many cores, not one each.
    So rows that cannot fill the cores are re-cut into as many equal rows as there are
    cores (or the most that divide the elements evenly); rows that can are kept."""
    if rows >= cores:
        return rows, cols
    total = rows * cols
    for r in range(min(cores, total // FLAT_ALIGN), rows, -1):
        if total % r == 0 and (total // r) % FLAT_ALIGN == 0:
            return r, total // r
    return rows, cols


@lowers(Op.ACT, Op.ADD, Op.MUL)
def _elementwise(ctx: Ctx, node: Node) -> Programs:
    g, addr = ctx.graph, ctx.addr
    out = g.tensors[node.outputs[0]]
    cols = out.shape[1]
    softmax = node.op == Op.ACT and node.attrs.fn == "softmax"  # a row op: whole rows
    rows = out.shape[0]
    if not softmax:
        rows, cols = flat_rows(rows, cols, ctx.chip.cores)
    views = tuple(View(addr[n], cols, g.tensors[n].dtype) for n in node.inputs)

    def op_for(c: int):  # noqa: ANN202
        if node.op in (Op.ADD, Op.MUL):
            return add_op(c, out.dtype, "v.mul" if node.op == Op.MUL else "v.add")
        return act_op(node.attrs.fn, c, out.dtype)
    warp = softmax and warp_softmax(cols, out.dtype, ctx.chip.core.vector.group_lanes)
    k = RowKernel(rows, views, View(addr[out.name], cols, out.dtype),
                  act_op("softmax", cols, out.dtype, warp=True) if warp else op_for(cols),
                  (), MAX_ROWS_PER_TILE, node.name, None if softmax else op_for,
                  latency_rows=_in_flight(ctx.chip) if warp else 0)
    if softmax and not warp and _streams(k, node.attrs.stream, ctx.chip):
        return _stream(ctx, RowStream("softmax", k.rows, views[0], k.out))
    return _rowwise(k, ctx.chip)


MEMCPY_ROWS, MEMCPY_COLS = 1 << 15, 1 << 12  # one dma.memcpy's shape at most (16-bit fields)


@lowers(Op.COPY)
def _copy(ctx: Ctx, node: Node) -> Programs:
    """A whole tensor copied as a driver copies it: on the chip's copy engine when it has
    one and the copy is at least ``copy_engine.min_bytes`` (one core issues the engine's
    ``dma.memcpy`` commands: no core moves the bytes), else as an element-wise kernel
    over the cores (a cast to the same type: read once, written once)."""
    g, addr = ctx.graph, ctx.addr
    src, out = g.tensors[node.inputs[0]], g.tensors[node.outputs[0]]
    if src.dtype != out.dtype or src.shape != out.shape:
        raise MappingError(f"{node.name}: a copy keeps shape and type "
                           f"({src.shape} {src.dtype} -> {out.shape} {out.dtype})")
    engine = ctx.chip.copy_engine
    if not engine.bandwidth or out.nbytes < engine.min_bytes:
        return _elementwise(ctx, replace(node, op=Op.ACT, attrs=ActAttrs("cast")))
    dt, elems = out.dtype, math.prod(out.shape)  # contiguous: copied as flat elements
    prog, step = [], MEMCPY_ROWS * MEMCPY_COLS
    for e0 in range(0, elems, step):
        rows, rest = divmod(min(step, elems - e0), MEMCPY_COLS)
        for e, r, c in ((e0, rows, MEMCPY_COLS), (e0 + rows * MEMCPY_COLS, 1, rest)):
            if r and c:
                prog.append(build("dma.memcpy", hbm(addr[out.name] + dt.nbytes(e)),
                                  hbm(addr[src.name] + dt.nbytes(e)), dt, r, c))
    return [prog]


UNARY = ("v.cast", "v.cos", "v.sin", "v.rsqrt", "v.silu", "v.exp")


@lowers(Op.EWISE)
def _ewise(ctx: Ctx, node: Node) -> Programs:
    """One kernel of an eager composite (``mapper.eager``): a row-wise pass over the first
    input's columns (a range of a wider tensor when ``col0``/``width`` say so), the second
    input as a tensor or a broadcast parameter, the output (or a range of it)."""
    g, addr, a = ctx.graph, ctx.addr, node.attrs
    ins = list(node.inputs)
    params = []
    if a.per_row:  # a per-token table (rotary cos / sin): a parameter of each row
        params.append(Param(addr[ins.pop()], a.per_row, per_row=True))
    if a.bcast != "none":
        b = g.tensors[ins.pop()]
        floats = b.shape[-1] if a.bcast == "row" else 1
        params.append(Param(addr[b.name], floats, per_row=a.bcast == "col"))
    x, out = g.tensors[ins[0]], g.tensors[node.outputs[0]]
    width = a.width or x.shape[1]
    views = [View(addr[x.name] + x.dtype.nbytes(a.col0), width, x.dtype, x.shape[1])]
    if len(ins) > 1:
        y = g.tensors[ins[1]]
        views.append(View(addr[y.name] + y.dtype.nbytes(a.b_col0), width, y.dtype, y.shape[1]))
    reduce = a.fn == "v.rsum"
    ov = View(addr[out.name] + out.dtype.nbytes(a.out_col0), 1 if reduce else width, out.dtype,
              out.shape[1])
    f32, odt, idt = DType.FP32, out.dtype, x.dtype

    def op_for(c: int):  # noqa: ANN202
        def op(o, i, p, rows):  # noqa: ANN001, ANN202
            if reduce:
                return [build("v.rsum", o, i[0], rows, c, f32, idt),
                        build("v.scale", o, o, rows, 1, f32, f32, a.scale)]
            if a.fn in UNARY:
                return [build(a.fn, o, i[0], rows, c, odt, idt)]
            if a.fn == "v.scale":
                return [build("v.scale", o, i[0], rows, c, odt, idt, a.scale)]
            if a.bcast != "none":
                return [build(a.fn, o, i[0], p[-1], rows, c, odt, idt, f32, a.bcast)]
            b = i[1] if len(i) > 1 else i[0]  # a per-row table: the tile by itself (timing)
            return [build(a.fn, o, i[0], b, rows, c, odt, idt, idt)]
        return op
    k = RowKernel(x.shape[0], tuple(views), ov, op_for(width), tuple(params),
                  MAX_ROWS_PER_TILE, node.name, None if reduce or params else op_for)
    return _rowwise(k, ctx.chip)


MIN_BLOCK_ROWS = 8  # rows per tile a column block aims to keep (so DMA and math overlap)


def _rowwise(k: RowKernel, chip: ChipConfig) -> list[list[Item]]:
    """Per-core programs of a row-wise kernel; an element-wise kernel of which not even one
    row fits the SRAM runs as column blocks, each with rows enough per tile to pipeline."""
    if k.op_for is None or sram_bytes(replace(k, rows_per_tile=1)) <= chip.core.sram.capacity:
        return row_programs(_fit(k, chip), chip.cores)  # whole rows fit: tiles of rows
    wide = replace(k, rows_per_tile=min(k.rows, MIN_BLOCK_ROWS))
    cols = k.out.cols
    width = cols
    while width > k.col_align and sram_bytes(replace(
            wide, inputs=tuple(replace(v, cols=width) for v in k.inputs),
            out=replace(k.out, cols=width))) > chip.core.sram.capacity:
        width = max(k.col_align, (width // 2) // k.col_align * k.col_align)
    blocks = [column_block(k, c0, min(width, cols - c0)) for c0 in range(0, cols, width)]
    return concat_programs([row_programs(_fit(b, chip), chip.cores) for b in blocks])


def _fit(k: RowKernel, chip: ChipConfig) -> RowKernel:
    """Rows per tile: a power of two (up to the tile cap) that gives every core a few tiles
    to pipeline (loads of one under the math of another), halved until the kernel's double
    buffers fit the SRAM."""
    share = max(1, -(-k.rows // (chip.cores * TILES_PER_CORE)))
    if k.latency_rows:  # rows in flight together (RowKernel.latency_rows)
        share = max(share, min(-(-k.rows // chip.cores), k.latency_rows))
    rows = min(k.rows_per_tile, 1 << (share - 1).bit_length())
    k = replace(k, rows_per_tile=rows)
    while sram_bytes(k) > chip.core.sram.capacity and k.rows_per_tile > 1:
        k = replace(k, rows_per_tile=k.rows_per_tile // 2)
    if sram_bytes(k) > chip.core.sram.capacity and k.buffers > 1:
        k = replace(k, buffers=1)  # one row, one buffer set: no overlap, but it maps
    if sram_bytes(k) > chip.core.sram.capacity:
        raise MappingError(f"{k.name}: one row of {k.inputs[0].cols} columns does not fit "
                           f"the {chip.core.sram.capacity} B SRAM (this op needs whole rows; "
                           f"a chip with more SRAM per core maps it)")
    return k


@lowers(Op.REPLICATE_ROWS)
def _replicate(ctx: Ctx, node: Node) -> list[list[Item]]:
    """``copies`` consecutive copies of a [T, H] tensor (each token once per routed expert):
    DMA only, load then store, chunks dealt to the cores."""
    src, dst = ctx.graph.tensors[node.inputs[0]], ctx.graph.tensors[node.outputs[0]]
    rows, cols = src.shape
    row_bytes = src.dtype.nbytes(cols)
    chunk = max(1, min(rows, ctx.chip.core.sram.capacity // row_bytes, 65535))
    jobs = [(r0, j) for j in range(node.attrs.copies) for r0 in range(0, rows, chunk)]
    progs: list[list[Item]] = [[] for _ in range(min(ctx.chip.cores, len(jobs)))]
    for i, (r0, j) in enumerate(jobs):
        n = min(chunk, rows - r0)
        progs[i % len(progs)] += [
            build("dma.load", sram(0), hbm(ctx.addr[src.name] + r0 * row_bytes), src.dtype, n,
                  cols),
            build("dma.store", hbm(ctx.addr[dst.name] + (j * rows + r0) * row_bytes), sram(0),
                  src.dtype, n, cols)]
    return progs


@lowers(Op.KV_APPEND)
def _kv_append(ctx: Ctx, node: Node) -> list[list[Item]]:
    """Copy the new tokens' K and V rows into the caches (DMA only: load, then store)."""
    g, addr = ctx.graph, ctx.addr
    if node.attrs.latent:
        return _latent_append(ctx, node)
    qkv = g.tensors[node.inputs[0]]
    kc = g.tensors[node.outputs[0]]
    batch, kvh, max_ctx, hd = kc.shape
    q_dim, kv_dim = node.attrs.q_dim, node.attrs.kv_dim
    t_all = qkv.shape[0]
    q_len = t_all // batch
    past = max_ctx - q_len
    e = qkv.dtype.nbytes(1)
    jobs = []
    for b in range(batch):
        for h in range(kvh):
            for which, cache in ((0, node.outputs[0]), (1, node.outputs[1])):
                col = q_dim + which * kv_dim + h * hd
                src = addr[qkv.name] + (b * q_len * qkv.shape[1] + col) * e
                dst = addr[cache] + (((b * kvh + h) * max_ctx) + past) * hd * e
                jobs.append((src, dst))
    rows_cap = max(1, ctx.chip.core.sram.capacity // (hd * e))
    progs: list[list[Item]] = [[] for _ in range(min(ctx.chip.cores, len(jobs)))]
    for i, (src, dst) in enumerate(jobs):
        seq = progs[i % len(progs)]
        for r0 in range(0, q_len, rows_cap):
            rows = min(rows_cap, q_len - r0)
            seq += [build("dma.load", sram(0), hbm(src + r0 * qkv.shape[1] * e), qkv.dtype, rows,
                          hd, stride=qkv.shape[1]),
                    build("dma.store", hbm(dst + r0 * hd * e), sram(0), qkv.dtype, rows, hd)]
    return progs


def _latent_append(ctx: Ctx, node: Node) -> list[list[Item]]:
    """MLA: each new token's latent and rotary key into its cache row (one row per token,
    shared by every head): per sequence and source, load the rows, store them strided."""
    g, addr = ctx.graph, ctx.addr
    cache = g.tensors[node.outputs[0]]
    batch, _, max_ctx, width = cache.shape
    jobs, col = [], 0
    for src in (g.tensors[n] for n in node.inputs):
        q_len, cols = src.shape[0] // batch, src.shape[1]
        for b in range(batch):
            jobs.append((addr[src.name] + src.dtype.nbytes(b * q_len * cols), cols, q_len,
                         addr[cache.name] + cache.dtype.nbytes((b * max_ctx + max_ctx - q_len)
                                                               * width + col), src.dtype))
        col += cols
    progs: list[list[Item]] = [[] for _ in range(min(ctx.chip.cores, len(jobs)))]
    for i, (src, cols, q_len, dst, dt) in enumerate(jobs):
        cap = max(1, ctx.chip.core.sram.capacity // dt.nbytes(cols))
        for r0 in range(0, q_len, cap):
            rows = min(cap, q_len - r0)
            progs[i % len(progs)] += [
                build("dma.load", sram(0), hbm(src + dt.nbytes(r0 * cols)), dt, rows, cols),
                build("dma.store", hbm(dst + dt.nbytes(r0 * width)), sram(0), dt, rows, cols,
                      stride=width)]
    return progs


@lowers(Op.ATTENTION)
def _attention(ctx: Ctx, node: Node) -> list[list[Item]]:
    g, addr = ctx.graph, ctx.addr
    x = node.attrs
    qkv = g.tensors[node.inputs[0]]
    kc = g.tensors[node.inputs[-1] if x.rope_dim else node.inputs[1]]
    out = g.tensors[node.outputs[0]]
    mla = {}
    if len(node.inputs) == 4:  # naive MLA prefill: per-head keys and values, shared k_rope
        kv, kr = g.tensors[node.inputs[2]], g.tensors[node.inputs[3]]
        qr = g.tensors[node.inputs[1]]
        heads, batch = x.heads, x.batch
        hd = qkv.shape[1] // heads
        max_ctx = qkv.shape[0] // batch
        mla = dict(rope_dim=x.rope_dim, q_rope=addr[qr.name], ldq_rope=qr.shape[1],
                   k_rope=addr[kr.name], kv_pitch=kv.shape[1], kv_stride=kv.shape[1] // heads)
        return _attention_tiles(ctx, node, Attention, heads, heads, hd, batch, max_ctx,
                                addr[kv.name], addr[kv.name] + kv.dtype.nbytes(hd), mla)
    batch, kvh, max_ctx, width = kc.shape
    hd = width - x.rope_dim  # MLA: the latent's width (a cache row ends with the rotary key)
    heads = out.shape[1] // hd
    if x.rope_dim:
        qr = g.tensors[node.inputs[1]]
        mla = dict(rope_dim=x.rope_dim, q_rope=addr[qr.name], ldq_rope=qr.shape[1])
    return _attention_tiles(ctx, node, Attention, heads, kvh, hd, batch, max_ctx,
                            addr[kc.name],
                            addr[node.inputs[-1] if x.rope_dim else node.inputs[2]], mla)


def _attention_tiles(ctx: Ctx, node: Node, attention, heads: int, kvh: int, hd: int,  # noqa: ANN001
                     batch: int, max_ctx: int, k_at: int, v_at: int,
                     mla: dict) -> list[list[Item]]:
    """The largest query and key tiles (and, in decode, heads per item) whose buffers fit
    the core, and the kernel's programs."""
    g, addr, chip, x = ctx.graph, ctx.addr, ctx.chip, node.attrs
    qkv, out = g.tensors[node.inputs[0]], g.tensors[node.outputs[0]]
    q_len = qkv.shape[0] // batch
    blocks = (0, 64, 32, 16) if q_len == 1 else (0,)
    best = None
    for hb in blocks:
        for tq in (128, 64, 32, 16):
            for tkv in (128, 64, 32, 16):
                a = attention(batch, heads, kvh, hd, q_len, max_ctx, max_ctx - q_len,
                              x.causal, addr[qkv.name], qkv.shape[1], k_at, v_at, max_ctx,
                              addr[out.name], qkv.dtype, min(tq, max(q_len, 1)), tkv,
                              stats=addr[node.outputs[1]] if len(node.outputs) > 1 else None,
                              scale=x.scale, head_block=hb, window=x.window, **mla)
                r = regions(a)
                if r.sram_bytes <= chip.core.sram.capacity and \
                        r.acc_bytes <= chip.core.acc.capacity:
                    best = a
                    break
            if best:
                break
        if best:
            break
    if best is None:
        raise MappingError(f"{node.name}: no attention tile fits the core's SRAM/accumulator")
    return attention_programs(best, chip.cores, ctx.scratch, ctx.boundary,
                              chip.core.sram.capacity)


from mapper import lowerings_bwd  # noqa: E402,F401  (registers the backward ops)
