"""Composite ops as eager PyTorch launches them (mapping option ``kernels: eager``).

Tessera's graph runs an RMSNorm, a rotary embedding or SwiGLU's product as one fused
kernel each. A plain PyTorch model (the Hugging Face LLaMA code, and the measured models of
the validation data) runs them as chains of small kernels, each reading its inputs from HBM
and writing its output back:

* ``LlamaRMSNorm``: ``x.float()``, ``pow(2)``, ``mean(-1)``, ``+ eps``, ``rsqrt``,
  ``x * r``, ``.to(bf16)``, ``weight * x``: 8 kernels, ~36 bytes per element moved against
  the fused kernel's 4;
* rotary embedding computed in the layer: the angles (positions x inverse frequencies, cat),
  ``cos``, ``sin`` and their casts; then for q and for k ``q * cos``, the negated half and
  the ``cat`` of ``rotate_half``, ``* sin`` and the sum: 5 + 2 x 5 kernels;
* SwiGLU's ``silu(gate) * up``: two kernels.

Each becomes an ``Op.EWISE`` node (one row-wise kernel: its vector instructions over tiles
of rows, its DMA in and out) so the per-kernel floor (DMA latency, the gap between kernels)
and the bytes are simulated, not fitted. Two of them use a timing stand-in: a product by a
per-token table broadcast over the heads (``q * cos``) reads the table as a per-row
parameter and multiplies the tile by itself (same cost class, same bytes), and
``rotate_half``'s strided halves are read as the first half of the columns. So the profile
is for timing only; functional mode refuses it.
"""

from __future__ import annotations

from isa.dtypes import DType
from mapper.graph import Graph, Kind, Node, Tensor
from mapper.ops import EwiseAttrs, Op

F32 = DType.FP32


def eager_composites(graph: Graph) -> Graph:
    """The graph with every RMSNorm, RoPE and SwiGLU product as PyTorch's kernel chain."""
    g = Graph(dict(graph.tensors), [])
    for node in graph.nodes:
        if node.op == Op.NORM and node.attrs.kind == "rmsnorm":
            _rmsnorm(g, node)
        elif node.op == Op.ROPE:
            _rope(g, node)
        elif node.op == Op.SILU_MUL:
            _silu_mul(g, node)
        else:
            g.nodes.append(node)
    return g


def _t(g: Graph, name: str, shape: tuple[int, ...], dt: DType) -> str:
    return g.add(Tensor(name, shape, dt))


def _k(g: Graph, name: str, ins: tuple[str, ...], out: str, fn: str, **attrs: object) -> None:
    g.nodes.append(Node(Op.EWISE, name, ins, (out,), EwiseAttrs(fn, **attrs)))


def _rmsnorm(g: Graph, node: Node) -> None:
    x, gamma = node.inputs[:2]
    out = node.outputs[0]
    T, H = g.tensors[x].shape
    dt = g.tensors[out].dtype
    n = node.name
    x32 = _t(g, n + ".x32", (T, H), F32)
    sq = _t(g, n + ".sq", (T, H), F32)
    var = _t(g, n + ".var", (T, 1), F32)
    ve = _t(g, n + ".ve", (T, 1), F32)
    rs = _t(g, n + ".rs", (T, 1), F32)
    y32 = _t(g, n + ".y32", (T, H), F32)
    y = _t(g, n + ".y", (T, H), dt)
    eps = g.add(Tensor(n + ".eps", (1,), F32, Kind.WEIGHT))
    _k(g, n + ".float", (x,), x32, "v.cast")
    _k(g, n + ".pow", (x32, x32), sq, "v.mul")
    _k(g, n + ".mean", (sq,), var, "v.rsum", scale=1.0 / H)
    _k(g, n + ".add_eps", (var, eps), ve, "v.add", bcast="scalar")
    _k(g, n + ".rsqrt", (ve,), rs, "v.rsqrt")
    _k(g, n + ".mul", (x32, rs), y32, "v.mul", bcast="col")
    _k(g, n + ".to", (y32,), y, "v.cast")
    _k(g, n + ".weight", (y, gamma), out, "v.mul", bcast="row")


def _rope(g: Graph, node: Node) -> None:
    qkv, table = node.inputs[:2]
    T, width = g.tensors[qkv].shape
    dt = g.tensors[qkv].dtype
    a = node.attrs
    hd, n = a.hd, node.name
    kvd = width - a.cols
    qd = a.cols - kvd
    ang = _t(g, n + ".angles", (T, hd), F32)
    _k(g, n + ".angles", (table, table), ang, "v.mul")  # positions x inv_freq, cat
    tabs = []
    for fn in ("cos", "sin"):
        t32 = _t(g, f"{n}.{fn}32", (T, hd), F32)
        tb = _t(g, f"{n}.{fn}", (T, hd), dt)
        _k(g, f"{n}.{fn}", (ang,), t32, f"v.{fn}")
        _k(g, f"{n}.{fn}.to", (t32,), tb, "v.cast")
        tabs.append(tb)
    cos, sin = tabs
    for part, col0, cols in (("q", 0, qd), ("k", qd, kvd)):
        p = f"{n}.{part}"
        a_ = _t(g, p + ".cos", (T, cols), dt)
        neg = _t(g, p + ".neg", (T, cols // 2), dt)
        rot = _t(g, p + ".rot", (T, cols), dt)
        b_ = _t(g, p + ".sin", (T, cols), dt)
        _k(g, p + ".mul_cos", (qkv, cos), a_, "v.mul", col0=col0, width=cols, per_row=hd)
        _k(g, p + ".neg", (qkv,), neg, "v.scale", col0=col0 + cols // 2, width=cols // 2,
           scale=-1.0)
        _k(g, p + ".cat", (qkv,), rot, "v.cast", col0=col0, width=cols)
        _k(g, p + ".mul_sin", (rot, sin), b_, "v.mul", per_row=hd)
        _k(g, p + ".add", (a_, b_), qkv, "v.add", width=cols, out_col0=col0)


def _silu_mul(g: Graph, node: Node) -> None:
    gu = node.inputs[0]
    out = node.outputs[0]
    T, f = g.tensors[out].shape
    s = _t(g, node.name + ".silu", (T, f), g.tensors[out].dtype)
    _k(g, node.name + ".silu", (gu,), s, "v.silu", width=f)
    _k(g, node.name + ".mul", (s, gu), out, "v.mul", b_col0=f)
