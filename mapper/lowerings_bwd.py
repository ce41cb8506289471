"""Lowerings of the backward-pass ops (``mapper.backward`` builds the graph).

The data and weight gradients of a projection are LINEAR nodes reading their operands
transposed (``w_trans``, ``a_trans``), lowered as any GEMM; here are the rest: attention's
backward (four kernels), SwiGLU's (two element-wise kernels) and a norm's (its dL/dx, and the
per-element products whose column sums are its parameters' gradient).
"""

from __future__ import annotations

from isa import DType, build
from mapper.emit import Item
from mapper.graph import Node
from mapper.kernels.attention import Attention
from mapper.kernels.attention_bwd import AttentionBwd, backward_programs
from mapper.kernels.attention_bwd import regions as bwd_regions
from mapper.kernels.cross_entropy import CrossEntropy, cross_entropy_programs, fit
from mapper.kernels.rowstream import RowStream
from mapper.kernels.rowwise import Param, RowKernel, View, concat_programs
from mapper.lowerings import (
    MAX_ROWS_PER_TILE,
    Ctx,
    MappingError,
    Programs,
    _rowwise,
    _stream,
    _streams,
    lowers,
)
from mapper.ops import Op

F32 = DType.FP32


@lowers(Op.ATTENTION_BWD)
def _attention_bwd(ctx: Ctx, node: Node) -> Programs:
    """D = rowsum(dO * O) and the fp32 dQ buffer zeroed; the five-matmul kernel; dQ cast
    into its columns of dqkv. Chip-wide syncs between (separate kernels on a GPU)."""
    g, addr, chip = ctx.graph, ctx.addr, ctx.chip
    qkv, kc, vc, out, dout, stats = (g.tensors[n] for n in node.inputs)
    dqkv, delta, dq32 = (g.tensors[n] for n in node.outputs)
    batch, kvh, max_ctx, hd = kc.shape
    heads = out.shape[1] // hd
    qd, T = heads * hd, out.shape[0]
    q_len = T // batch
    if max_ctx != q_len:
        raise MappingError(f"{node.name}: the backward pass needs a prefill (keys = queries)")
    best = None
    for tq, tkv in ((64, 64), (64, 32), (32, 32), (16, 16)):
        a = Attention(batch, heads, kvh, hd, q_len, max_ctx, 0, node.attrs.causal,
                      addr[qkv.name], qkv.shape[1], addr[kc.name], addr[vc.name], max_ctx,
                      addr[out.name], qkv.dtype, min(tq, q_len), min(tkv, q_len),
                      stats=addr[stats.name])
        r = bwd_regions(a)
        if r.sram_bytes <= chip.core.sram.capacity and r.acc_bytes <= chip.core.acc.capacity:
            best = a
            break
    if best is None:
        raise MappingError(f"{node.name}: no attention backward tile fits the core")
    e = qkv.dtype.nbytes(1)
    b = AttentionBwd(best, addr[dout.name], addr[delta.name], addr[dq32.name],
                     addr[dqkv.name] + qd * e, addr[dqkv.name] + (qd + kvh * hd) * e,
                     dqkv.shape[1])
    dt = out.dtype
    d_kernel = RowKernel(T, (View(addr[dout.name], qd, dt), View(addr[out.name], qd, dt)),
                         View(addr[delta.name], heads, F32), _delta_op(heads, hd, dt), (),
                         MAX_ROWS_PER_TILE, node.name + ".delta")
    zero = _elementwise_kernel(T, (View(addr[dout.name], qd, dt),), View(addr[dq32.name], qd, F32),
                               lambda c: _zero_op(c, dt), node.name + ".zero")
    cast = _elementwise_kernel(T, (View(addr[dq32.name], qd, F32),),
                               View(addr[dqkv.name], qd, dqkv.dtype, dqkv.shape[1]),
                               lambda c: _cast_op(c, dqkv.dtype), node.name + ".dq")
    phases = [concat_programs([_rowwise(d_kernel, chip), _rowwise(zero, chip)]),
              backward_programs(b, chip.cores), _rowwise(cast, chip)]
    return _in_sequence(phases, chip.cores, ctx.boundary)


def _in_sequence(phases: list[list[list[Item]]], cores: int, boundary: tuple
                 ) -> list[list[Item]]:
    """Kernels one after another, a chip-wide sync between each two."""
    out: list[list[Item]] = [[] for _ in range(cores)]
    for i, progs in enumerate(phases):
        for c in range(cores):
            if i:
                out[c] += list(boundary)
            out[c] += progs[c] if c < len(progs) else []
    return out


def _elementwise_kernel(rows: int, ins: tuple[View, ...], out: View, op_for, name: str
                        ) -> RowKernel:  # noqa: ANN001
    return RowKernel(rows, ins, out, op_for(out.cols), (), MAX_ROWS_PER_TILE, name, op_for)


def _delta_op(heads: int, hd: int, dt: DType):  # noqa: ANN202
    """Each head's sum of dO * O: the row tile seen as [rows * heads, hd]."""
    def op(out, ins, params, rows):  # noqa: ANN001
        return [build("v.mul", ins[0], ins[0], ins[1], rows, heads * hd, dt, dt, dt),
                build("v.rsum", out, ins[0], rows * heads, hd, F32, dt)]
    return op


def _zero_op(cols: int, dt: DType):  # noqa: ANN202
    """Zeros (x - x of a finite input) in fp32: a memset with the same traffic shape."""
    def op(out, ins, params, rows):  # noqa: ANN001
        return [build("v.sub", out, ins[0], ins[0], rows, cols, F32, dt, dt)]
    return op


def _cast_op(cols: int, odt: DType):  # noqa: ANN202
    def op(out, ins, params, rows):  # noqa: ANN001
        return [build("v.cast", out, ins[0], rows, cols, odt, F32)]
    return op


@lowers(Op.SILU_MUL_BWD)
def _silu_mul_bwd(ctx: Ctx, node: Node) -> Programs:
    """d gate = dy * up * silu'(gate) and d up = dy * silu(gate), each an element-wise
    kernel writing its half of d(gate | up)."""
    g, addr = ctx.graph, ctx.addr
    gu, dy, dgu = g.tensors[node.inputs[0]], g.tensors[node.inputs[1]], \
        g.tensors[node.outputs[0]]
    f, dt = node.attrs.ffn, dgu.dtype
    e = dt.nbytes(1)
    gate = View(addr[gu.name], f, gu.dtype, 2 * f)
    up = View(addr[gu.name] + f * e, f, gu.dtype, 2 * f)
    dyv = View(addr[dy.name], f, dy.dtype)

    def d_gate(c: int):  # noqa: ANN202
        def op(out, ins, params, rows):  # noqa: ANN001
            return [build("v.dsilu", ins[0], ins[0], rows, c, dt, dt),
                    build("v.mul", ins[0], ins[0], ins[1], rows, c, dt, dt, dt),
                    build("v.mul", out, ins[0], ins[2], rows, c, dt, dt, dt)]
        return op

    def d_up(c: int):  # noqa: ANN202
        def op(out, ins, params, rows):  # noqa: ANN001
            return [build("v.silu", ins[0], ins[0], rows, c, dt, dt),
                    build("v.mul", out, ins[0], ins[1], rows, c, dt, dt, dt)]
        return op

    k1 = _elementwise_kernel(gu.shape[0], (gate, up, dyv), View(addr[dgu.name], f, dt, 2 * f),
                             d_gate, node.name + ".dgate")
    k2 = _elementwise_kernel(gu.shape[0], (gate, dyv),
                             View(addr[dgu.name] + f * e, f, dt, 2 * f), d_up,
                             node.name + ".dup")
    return concat_programs([_rowwise(k1, ctx.chip), _rowwise(k2, ctx.chip)])


def _x_dy_kernel(ctx: Ctx, node: Node, op, stream: str) -> Programs:  # noqa: ANN001
    """A row kernel over whole rows of x and dy (inputs 0 and 1) with one per-kernel fp32
    parameter block (input 2), writing output 0; a row that cannot be staged in the SRAM
    is streamed chunk by chunk as the ``stream`` kind (mapper.kernels.rowstream)."""
    g, addr = ctx.graph, ctx.addr
    x, dy, prm = (g.tensors[n] for n in node.inputs)
    out = g.tensors[node.outputs[0]]
    cols = x.shape[1]
    k = RowKernel(x.shape[0], (View(addr[x.name], cols, x.dtype),
                               View(addr[dy.name], cols, dy.dtype)),
                  View(addr[out.name], cols, out.dtype), op(cols, x.dtype, dy.dtype, out.dtype),
                  (Param(addr[prm.name], prm.shape[0]),), MAX_ROWS_PER_TILE, node.name)
    if _streams(k, False, ctx.chip):
        return _stream(ctx, RowStream(stream, k.rows, k.inputs[0], k.out, addr[prm.name],
                                      node.attrs.eps, dy=k.inputs[1]))
    return _rowwise(k, ctx.chip)


@lowers(Op.NORM_BWD)
def _norm_bwd(ctx: Ctx, node: Node) -> Programs:
    """dL/dx of a norm over whole rows: inputs x, dy and the parameters followed by eps."""
    mn = "v.rmsgrad" if node.attrs.kind == "rmsnorm" else "v.lngrad"

    def op_of(cols: int, xdt: DType, dydt: DType, odt: DType):  # noqa: ANN202
        def op(out, ins, prm, rows):  # noqa: ANN001
            return [build(mn, out, ins[0], ins[1], prm[0], rows, cols, odt, xdt)]
        return op
    return _x_dy_kernel(ctx, node, op_of, mn[2:])


@lowers(Op.NORM_XDY)
def _norm_xdy(ctx: Ctx, node: Node) -> Programs:
    """dy * (x normalized, before its scale and shift): the norm with unit parameters
    (inputs[2]: ones, then zeros for a layernorm's shift), times dy."""
    mn = "v.rmsnorm" if node.attrs.kind == "rmsnorm" else "v.layernorm"
    eps = node.attrs.eps

    def op_of(cols: int, xdt: DType, dydt: DType, odt: DType):  # noqa: ANN202
        def op(o, ins, prm, rows):  # noqa: ANN001
            return [build(mn, ins[0], ins[0], prm[0], rows, cols, xdt, xdt, eps),
                    build("v.mul", o, ins[0], ins[1], rows, cols, odt, xdt, dydt)]
        return op
    return _x_dy_kernel(ctx, node, op_of, "rmsxdy" if node.attrs.kind == "rmsnorm" else "lnxdy")


@lowers(Op.XENT)
def _xent(ctx: Ctx, node: Node) -> Programs:
    """The loss gradient over the vocabulary (``mapper.kernels.cross_entropy``); in fp32,
    a cast kernel before it and one after, as autocast runs ``cross_entropy(x.float())``."""
    g, addr, chip = ctx.graph, ctx.addr, ctx.chip
    x, d = g.tensors[node.inputs[0]], g.tensors[node.outputs[0]]
    rows, vocab = x.shape
    if not node.attrs.fp32:
        c = fit(CrossEntropy(rows, vocab, addr[x.name], addr[d.name], x.dtype),
                chip.core.sram.capacity)
        return cross_entropy_programs(c, chip.cores)
    x32 = g.tensors[node.outputs[1]]
    up = _elementwise_kernel(rows, (View(addr[x.name], vocab, x.dtype),),
                             View(addr[x32.name], vocab, F32), lambda c: _widen_op(c, x.dtype),
                             node.name + ".float")
    c = fit(CrossEntropy(rows, vocab, addr[x32.name], addr[x32.name], F32),
            chip.core.sram.capacity)
    down = _elementwise_kernel(rows, (View(addr[x32.name], vocab, F32),),
                               View(addr[d.name], vocab, d.dtype),
                               lambda c: _cast_op(c, d.dtype), node.name + ".cast")
    return _in_sequence([_rowwise(up, chip), cross_entropy_programs(c, chip.cores),
                         _rowwise(down, chip)], chip.cores, ctx.boundary)


def _widen_op(cols: int, idt: DType):  # noqa: ANN202
    def op(out, ins, params, rows):  # noqa: ANN001
        return [build("v.cast", out, ins[0], rows, cols, F32, idt)]
    return op


@lowers(Op.ACT_BWD)
def _act_bwd(ctx: Ctx, node: Node) -> Programs:
    """dx = dy * act'(x), element-wise (inputs x, dy)."""
    g, addr = ctx.graph, ctx.addr
    x, dy = g.tensors[node.inputs[0]], g.tensors[node.inputs[1]]
    dx = g.tensors[node.outputs[0]]
    fn = {"gelu": "v.dgelu", "silu": "v.dsilu"}.get(node.attrs.fn)
    if fn is None:
        raise MappingError(f"{node.name}: no backward for activation '{node.attrs.fn}'")
    dt = dx.dtype

    def op_for(c: int):  # noqa: ANN202
        def op(out, ins, params, rows):  # noqa: ANN001
            return [build(fn, ins[0], ins[0], rows, c, dt, x.dtype),
                    build("v.mul", out, ins[0], ins[1], rows, c, dt, dt, dy.dtype)]
        return op
    cols = x.shape[1]
    k = _elementwise_kernel(x.shape[0], (View(addr[x.name], cols, x.dtype),
                                         View(addr[dy.name], cols, dy.dtype)),
                            View(addr[dx.name], cols, dt), op_for, node.name)
    return _rowwise(k, ctx.chip)
