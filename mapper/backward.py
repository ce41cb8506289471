"""The training graph: decoder layers' forward pass, then its backward pass, in one graph.

``training_graph`` builds the prefill forward of ``layers`` layers (attention also keeps
each row's softmax statistics) and appends the gradient of every node, walking the forward
nodes in reverse with one rule per op (``GRADS``), as autograd does:

* a projection y = x W (+ r): dx = dy W^T and dW += x^T dy (fp32, accumulated over
  micro-batches), both GEMMs reading their operands as the forward stored them; dr = dy;
* attention: the flash-attention backward (``mapper.kernels.attention_bwd``), whose dK and
  dV are the gradient of the K/V cache append, written into their columns of d(qkv);
* RoPE: the inverse rotation (the table with its sines negated), in place;
* SwiGLU, norms: element-wise / row-wise kernels; a norm's parameter gradient is the column
  sum of dy * xhat, a GEMM with a ones vector;
* a tensor read twice (a residual) sums its gradients with an add.

Saved activations are the forward's tensors, read again by the backward nodes (recomputing
them is ``recompute``'s business one level up). Tensor names: ``d:<name>`` for a gradient,
``<weight>.grad`` for a weight's fp32 gradient buffer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from isa.dtypes import DType
from isa.errors import TesseraError
from mapper.graph import Graph, Kind, Node, Tensor
from mapper.layers import Phase, Shard, build_layers
from mapper.ops import Op, XentAttrs

F32 = DType.FP32
NO_SHARD = Shard()  # one chip: no tensor parallelism


class TrainingGraphError(TesseraError, ValueError):
    """The model has an op whose backward pass is not lowered."""


@dataclass
class _Walk:
    g: Graph
    fwd: Graph
    grads: dict[str, str] = field(default_factory=dict)
    shard: Shard = NO_SHARD
    grad_dt: DType = F32  # of weight gradients
    accumulate: bool = True  # weight gradients are added to their buffers (else written)

    def ones(self, rows: int) -> str:
        """A [rows, 1] column of ones (the left operand of a column sum)."""
        return self.g.add(Tensor(f"ones{rows}", (rows, 1), DType.BF16, Kind.WEIGHT))

    def weight_grad(self, weight: str, shape: tuple[int, ...]) -> tuple[str, str | None]:
        """(the gradient buffer of ``weight``, the residual a GEMM adds it to, or None)."""
        gw = self.g.add(Tensor(weight + ".grad", shape, self.grad_dt, Kind.INPUT))
        return gw, gw if self.accumulate else None

    def grad_of(self, name: str) -> str | None:
        return self.grads.get(name)

    def new(self, name: str, like: str, dtype: DType | None = None,
            shape: tuple[int, ...] | None = None, kind: Kind = Kind.ACTIVATION) -> str:
        t = self.g.tensors[like]
        return self.g.add(Tensor(name, shape or t.shape, dtype or t.dtype, kind))

    def contribute(self, target: str, grad: str) -> None:
        """Add ``grad`` to the gradient of ``target`` (an add node when it has one)."""
        prev = self.grads.get(target)
        if prev is None:
            self.grads[target] = grad
            return
        out = self.new(f"d:{target}+{len(self.g.nodes)}", prev)
        self.g.op(Op.ADD, f"bwd.{target}.sum{len(self.g.nodes)}", [prev, grad], [out])
        self.grads[target] = out


@dataclass(frozen=True)
class GradMode:
    """How weight gradients are kept: fp32 and accumulated over micro-batches (Megatron's
    main_grad with fused accumulation), or written in the compute type (a framework's
    first backward into bf16 parameters)."""

    dtype: DType = F32
    accumulate: bool = True


def training_graph(model, phase: Phase, layers: int, dt: DType = DType.BF16,  # noqa: ANN001
                   first: int = 0, shard: Shard = NO_SHARD, grads: GradMode = GradMode()
                   ) -> Graph:
    """Forward then backward of layers ``first .. first+layers-1`` for a prefill ``phase``:
    input ``x{first}`` and the output gradient ``d:x{first+layers}``; out come
    ``d:x{first}`` and every ``<weight>.grad``. With a tensor-parallel ``shard``, the
    gradient entering each column-parallel projection's input is all-reduced over the
    group (Megatron's f operator), the row-parallel all-reduce passes gradients through."""
    if phase.kind != "prefill":
        raise TrainingGraphError("a training step runs prefill-shaped micro-batches")
    fwd = _with_stats(build_layers(model, phase, layers, dt, shard, first=first))
    last = f"x{first + layers}"
    return backward_of(fwd, last, f"x{first}", shard, grads=grads)


def training_head(model, phase: Phase, dt: DType = DType.BF16,  # noqa: ANN001
                  fp32_loss: bool = False, grads: GradMode = GradMode()) -> Graph:
    """The final norm and LM head over every token, the softmax cross-entropy's gradient
    (in fp32 when ``fp32_loss``, as autocast runs it), and their backward, to ``d:h``."""
    g = Graph()
    T, H = phase.tokens, model.hidden
    g.add(Tensor("h", (T, H), dt, Kind.INPUT))
    norm = getattr(model.norm, "value", model.norm)
    gamma = g.add(Tensor("final_norm.w", (2 * H if norm == "layernorm" else H,), F32,
                         Kind.WEIGHT))
    g.add(Tensor("h_norm", (T, H), dt))
    g.op(Op.NORM, "final_norm", ["h", gamma], ["h_norm"], kind=norm, eps=float(model.norm_eps))
    g.add(Tensor("lm_head.w", (H, model.vocab), dt, Kind.WEIGHT))
    g.add(Tensor("logits", (T, model.vocab), dt))
    g.op(Op.LINEAR, "lm_head", ["h_norm", "lm_head.w"], ["logits"])
    g.add(Tensor("d:logits", (T, model.vocab), dt))
    out = backward_of(g, None, "h", NO_SHARD, seeds={"logits": "d:logits"}, grads=grads)
    extra = [out.add(Tensor("logits.fp32", (T, model.vocab), F32))] if fp32_loss else []
    xent = Node(Op.XENT, "bwd.loss", ("logits",), ("d:logits", *extra), XentAttrs(fp32_loss))
    at = forward_nodes(out)
    out.nodes.insert(at, xent)
    return out


def backward_of(fwd: Graph, last: str | None, first: str, shard: Shard,
                seeds: dict[str, str] | None = None, grads: GradMode = GradMode()) -> Graph:
    """``fwd`` followed by its backward nodes, from the output gradient ``d:<last>`` (or
    ``seeds``: tensor -> its gradient's name) down to ``d:<first>``."""
    g = fwd.copy()
    if last is not None:
        g.add(Tensor(f"d:{last}", g.tensors[last].shape, g.tensors[last].dtype, Kind.INPUT))
    w = _Walk(g, fwd, dict(seeds or {}), shard, grads.dtype, grads.accumulate)
    if last is not None:
        w.grads[last] = f"d:{last}"
    for node in reversed(fwd.nodes):
        rule = GRADS.get(node.op)
        if rule is None:
            raise TrainingGraphError(f"{node.name}: no backward rule for op {node.op.value}")
        rule(w, node)
    d = w.grads[first]
    if d != f"d:{first}":
        g.op(Op.RENAME, "bwd.out", [d], [w.new(f"d:{first}", first)])
    return g


def forward_nodes(g: Graph) -> int:
    """How many of the training graph's nodes are the forward pass (they come first)."""
    return next((i for i, n in enumerate(g.nodes) if n.name.startswith("bwd.")), len(g.nodes))


def _with_stats(g: Graph) -> Graph:
    """Attention nodes also write each query row's softmax max and 1/sum (fp32); a fused
    activation becomes a node of its own, so its input is kept for the backward."""
    out = Graph(g.tensors, [])
    for node in g.nodes:
        if node.op == Op.LINEAR and node.attrs.act:
            y = node.outputs[0]
            pre = out.add(Tensor(y + ".pre", g.tensors[y].shape, g.tensors[y].dtype))
            out.nodes.append(replace(node.with_attrs(act=None), outputs=(pre,)))
            out.op(Op.ACT, node.name + ".act", [pre], [y], fn=node.attrs.act)
            continue
        if node.op == Op.ATTENTION:
            att = g.tensors[node.outputs[0]]
            heads = node.attrs.heads if len(node.inputs) == 4 else \
                att.shape[1] // g.tensors[node.inputs[1]].shape[3]  # (MLA: its attribute)
            stats = out.add(Tensor(node.name + ".stats", (2, heads, att.shape[0]), F32))
            node = replace(node, outputs=(node.outputs[0], stats))
        out.nodes.append(node)
    return out


Rule = Callable[[_Walk, Node], None]
GRADS: dict[Op, Rule] = {}


def rule(*ops: Op) -> Callable[[Rule], Rule]:
    def register(fn: Rule) -> Rule:
        for op in ops:
            GRADS[op] = fn
        return fn
    return register


@rule(Op.RENAME)
def _rename(w: _Walk, node: Node) -> None:
    if (d := w.grad_of(node.outputs[0])) is not None:
        w.contribute(node.inputs[0], d)


@rule(Op.ALLREDUCE)
def _allreduce(w: _Walk, node: Node) -> None:
    """A row-parallel projection's all-reduce: its output's gradient is every rank's."""


@rule(Op.ALLGATHER)
def _allgather(w: _Walk, node: Node) -> None:
    """Sequence parallelism: every rank used the gathered rows, so a rank's own rows get the
    sum of every rank's gradient of them: a reduce-scatter."""
    if node.attrs.count:
        raise TrainingGraphError(f"{node.name}: the backward of a context-parallel gather is "
                                 f"not lowered")
    _reversed_collective(w, node, Op.REDUCESCATTER)


@rule(Op.REDUCESCATTER)
def _reducescatter(w: _Walk, node: Node) -> None:
    """Sequence parallelism: each rank's partial sums reached every rank's rows, so their
    gradient is every rank's rows of the output gradient: an all-gather."""
    _reversed_collective(w, node, Op.ALLGATHER)


def _reversed_collective(w: _Walk, node: Node, op: Op) -> None:
    """The input's gradient: the output's, through ``op`` on the same group."""
    if (d := w.grad_of(node.outputs[0])) is None:
        return
    dx = w.new(f"d:{node.inputs[0]}@{node.name}", node.inputs[0])
    w.g.op(op, f"bwd.{node.name}", [d], [dx], group=node.attrs.group)
    w.contribute(node.inputs[0], dx)


@rule(Op.KV_APPEND)
def _kv_append(w: _Walk, node: Node) -> None:
    """Nothing: attention's backward wrote dK and dV into d(qkv) directly."""


@rule(Op.LINEAR)
def _linear(w: _Walk, node: Node) -> None:
    a = node.attrs
    if a.groups > 1:
        raise TrainingGraphError(f"{node.name}: the backward of a per-head batched GEMM "
                                 f"(absorbed MLA) is not lowered")
    if a.act or a.scale or a.row_scale or a.decode or a.sparse:
        raise TrainingGraphError(f"{node.name}: the backward of a projection with a fused "
                                 f"activation or quantized weights is not lowered")
    dy = w.grad_of(node.outputs[0])
    if dy is None:
        return
    if a.residual or a.tp_residual:  # every rank's sum carries it once: dr = dy everywhere
        w.contribute(a.residual or a.tp_residual, dy)
    x, weight = node.inputs[0], node.inputs[1]
    if a.group_rows:
        _grouped_linear(w, node, dy)
        return
    gw, acc = w.weight_grad(weight, w.g.tensors[weight].shape)
    w.g.op(Op.LINEAR, f"bwd.{node.name}.wgrad", [x, dy], [gw], a_trans=True, residual=acc)
    if a.bias:  # the bias gradient: column sums of dy, a GEMM of a ones column with it
        gb, acc = w.weight_grad(node.inputs[2], (1, w.g.tensors[dy].shape[1]))
        w.g.op(Op.LINEAR, f"bwd.{node.name}.dbias", [w.ones(w.g.tensors[dy].shape[0]), dy],
               [gb], a_trans=True, residual=acc)
    dx = w.new(f"d:{x}", x)
    prev = w.grads.pop(x, None)
    w.g.op(Op.LINEAR, f"bwd.{node.name}.dgrad", [dy, weight], [dx], w_trans=True,
           residual=prev)
    w.grads[x] = dx


def _grouped_linear(w: _Walk, node: Node, dy: str) -> None:
    """A grouped (MoE experts) projection's backward, one GEMM pair per group over row
    views: dW_q += x_q^T dy_q into rows q*K.. of W's gradient, dx_q = dy_q W_q^T into x's
    rows of group q (backward grouped kernels are not modelled: a launch each)."""
    x, weight = node.inputs[0], node.inputs[1]
    k = w.g.tensors[x].shape[1]
    gw, _ = w.weight_grad(weight, w.g.tensors[weight].shape)
    dx = w.new(f"d:{x}", x)
    r0 = 0
    for q, rows in enumerate(node.attrs.group_rows):
        if not rows:
            continue
        base = f"bwd.{node.name}.g{q}"
        views = {}
        for name, src, first, shape in (("x", x, r0, (rows, k)),
                                        ("dy", dy, r0, (rows, w.g.tensors[dy].shape[1])),
                                        ("w", weight, q * k, (k, w.g.tensors[weight].shape[1])),
                                        ("gw", gw, q * k, (k, w.g.tensors[weight].shape[1]))):
            t = w.g.tensors[src]
            views[name] = w.g.add(Tensor(f"{base}.{name}", shape, t.dtype))
            w.g.op(Op.SLICE_ROWS, f"{base}.{name}.view", [src], [views[name]], first=first)
        w.g.op(Op.LINEAR, f"{base}.wgrad", [views["x"], views["dy"]], [views["gw"]],
               a_trans=True, residual=views["gw"] if w.accumulate else None)
        dxq = w.g.add(Tensor(f"{base}.dx", (rows, k), w.g.tensors[x].dtype))
        w.g.op(Op.LINEAR, f"{base}.dgrad", [views["dy"], views["w"]], [dxq], w_trans=True)
        w.g.op(Op.PLACE_ROWS, f"{base}.put", [dxq], [dx], first=r0)
        r0 += rows
    w.contribute(x, dx)


@rule(Op.ATTENTION)
def _attention(w: _Walk, node: Node) -> None:
    if len(node.inputs) == 4:
        _mla_attention(w, node)
        return
    qkv, kc, vc = node.inputs
    att, stats = node.outputs
    datt = w.grad_of(att)
    if datt is None:
        return
    t = w.g.tensors[att]
    heads = w.g.tensors[stats].shape[1]
    dqkv = w.new(f"d:{qkv}", qkv)
    delta = w.new(node.name + ".delta", stats, F32, (t.shape[0], heads))
    dq32 = w.new(node.name + ".dq32", att, F32)
    w.g.op(Op.ATTENTION_BWD, f"bwd.{node.name}", [qkv, kc, vc, att, datt, stats],
           [dqkv, delta, dq32], causal=node.attrs.causal)
    w.contribute(qkv, dqkv)


def _mla_attention(w: _Walk, node: Node) -> None:
    """MLA's attention backward as a training stack runs it (DeepSeek's Hugging Face code
    with FlashAttention-2): queries as no-rotary | rotary parts concatenated per head, keys
    as each head's no-rotary part | the shared rotary key, values padded to the same head
    size (192), one flash-attention backward over them, and the gradients copied back to
    their tensors. The copies are element-wise kernels; the backward's values are 64 columns
    wider than the 128 they hold, as the padding makes them. Timing only: the padded
    buffers hold no data (training runs in performance mode)."""
    qn, qr, kv, kpe = node.inputs
    att, stats = node.outputs
    datt = w.grad_of(att)
    if datt is None:
        return
    nh, batch, dr = node.attrs.heads, node.attrs.batch, node.attrs.rope_dim
    T, qd = w.g.tensors[qn].shape
    dn = qd // nh
    hq, dt = dn + dr, w.g.tensors[qn].dtype
    name = f"bwd.{node.name}"

    def tensor(suffix: str, shape: tuple[int, ...], dtype: DType = dt) -> str:
        return w.g.add(Tensor(f"{name}.{suffix}", shape, dtype))

    def copy(src: str, dst: str, col0: int, width: int, out_col0: int, what: str) -> None:
        w.g.op(Op.EWISE, f"{name}.{what}", [src], [dst], fn="v.cast", col0=col0, width=width,
               out_col0=out_col0)

    qkv = tensor("qkv", (T, 3 * nh * hq))  # [q | k | v], head size hq each
    copy(qn, qkv, 0, nh * dn, 0, "cat_q_nope")
    copy(qr, qkv, 0, nh * dr, nh * dn, "cat_q_rope")
    copy(kv, qkv, 0, nh * 2 * dn, nh * hq, "cat_kv")
    copy(kpe, qkv, 0, dr, nh * hq + nh * 2 * dn, "expand_k_rope")
    shape = (batch, nh, T // batch, hq)
    kc = w.g.add(Tensor(f"{name}.k", shape, dt, Kind.KV_CACHE))
    vc = w.g.add(Tensor(f"{name}.v", shape, dt, Kind.KV_CACHE))
    w.g.op(Op.KV_APPEND, f"{name}.kv_append", [qkv], [kc, vc], q_dim=nh * hq, kv_dim=nh * hq)
    out, dout = tensor("o", (T, nh * hq)), tensor("do", (T, nh * hq))
    copy(att, out, 0, nh * dn, 0, "pad_o")
    copy(datt, dout, 0, nh * dn, 0, "pad_do")
    dqkv = tensor("dqkv", (T, 3 * nh * hq))
    delta = tensor("delta", (T, nh), F32)
    dq32 = tensor("dq32", (T, nh * hq), F32)
    w.g.op(Op.ATTENTION_BWD, name, [qkv, kc, vc, out, dout, stats], [dqkv, delta, dq32],
           causal=node.attrs.causal)
    for src, col0, width, what in ((qn, 0, nh * dn, "dq_nope"), (qr, nh * dn, nh * dr, "dq_rope"),
                                   (kv, nh * hq, nh * 2 * dn, "dkv"),
                                   (kpe, nh * hq + nh * 2 * dn, dr, "dk_rope")):
        d = w.new(f"d:{src}@{node.name}", src)
        copy(dqkv, d, col0, width, 0, what)
        w.contribute(src, d)


@rule(Op.ROPE)
def _rope(w: _Walk, node: Node) -> None:
    """In place on the q and k columns of d(qkv): rotate back by the same angles."""
    d = w.grad_of(node.inputs[0])
    if d is None:
        return
    table = node.inputs[1]
    inv = w.g.add(Tensor(table + ".inverse", w.g.tensors[table].shape, F32, Kind.WEIGHT))
    a = node.attrs
    w.g.op(Op.ROPE, f"bwd.{node.name}", [d, inv], [d], cols=a.cols, hd=a.hd, theta=a.theta,
           pos0=a.pos0, seq=a.seq)


# ---- mixture of experts: the token routing is data movement, so is its gradient ----------

@rule(Op.SUM_COPIES)
def _sum_copies(w: _Walk, node: Node) -> None:
    """y = sum of each token's k expert outputs + residual: every copy's gradient is dy
    (written k times, as the forward's dispatch copied x), the residual's is dy."""
    d = w.grad_of(node.outputs[0])
    if d is None:
        return
    back, residual = node.inputs
    dback = w.new(f"d:{back}", back)
    w.g.op(Op.REPLICATE_ROWS, f"bwd.{node.name}", [d], [dback], copies=node.attrs.copies)
    w.contribute(back, dback)
    w.contribute(residual, d)


def _mirror(w: _Walk, node: Node, op: Op, **attrs: object) -> None:
    """A one-input data movement's gradient: the output's gradient moved back by ``op``."""
    d = w.grad_of(node.outputs[0])
    if d is None:
        return
    src = node.inputs[0]
    dsrc = w.new(f"d:{src}", src)
    w.g.op(op, f"bwd.{node.name}", [d], [dsrc], **attrs)
    w.contribute(src, dsrc)


@rule(Op.ALLTOALL)
def _alltoall(w: _Walk, node: Node) -> None:
    """An exchange's gradient goes back the way it came: the same all-to-all, reversed."""
    _mirror(w, node, Op.ALLTOALL, group=node.attrs.group, ep=node.attrs.ep)


@rule(Op.PLACE_ROWS)
def _place_rows(w: _Walk, node: Node) -> None:
    """An expert's output rows placed into the layer's: their gradient is those rows."""
    _mirror(w, node, Op.SLICE_ROWS, first=node.attrs.first)


@rule(Op.SLICE_ROWS)
def _slice_rows(w: _Walk, node: Node) -> None:
    """An expert's input rows: their gradient is placed at those rows of the whole's (the
    experts' slices tile the received rows, so the parts fill one buffer; no sum)."""
    d = w.grad_of(node.outputs[0])
    if d is None:
        return
    whole = node.inputs[0]
    buf = w.grads.get(whole)
    if buf is None:
        buf = w.grads[whole] = w.new(f"d:{whole}", whole)
    w.g.op(Op.PLACE_ROWS, f"bwd.{node.name}", [d], [buf], first=node.attrs.first)


@rule(Op.REPLICATE_ROWS)
def _replicate_rows(w: _Walk, node: Node) -> None:
    """x copied once per routed expert: its gradient is the sum of the copies' gradients
    (a row kernel over the k copies; the residual slot reads a zero tensor)."""
    d = w.grad_of(node.outputs[0])
    if d is None:
        return
    x = node.inputs[0]
    zero = w.g.add(Tensor(f"zeros.{x}", w.g.tensors[x].shape, w.g.tensors[x].dtype,
                          Kind.WEIGHT))
    dx = w.new(f"d:{x}@{node.name}", x)
    w.g.op(Op.SUM_COPIES, f"bwd.{node.name}", [d, zero], [dx], copies=node.attrs.copies)
    w.contribute(x, dx)


@rule(Op.ACT)
def _act(w: _Walk, node: Node) -> None:
    d = w.grad_of(node.outputs[0])
    if d is None:
        return
    x = node.inputs[0]
    dx = w.new(f"d:{x}", x)
    w.g.op(Op.ACT_BWD, f"bwd.{node.name}", [x, d], [dx], fn=node.attrs.fn)
    w.contribute(x, dx)


@rule(Op.ADD)
def _add(w: _Walk, node: Node) -> None:
    d = w.grad_of(node.outputs[0])
    if d is not None:
        for x in node.inputs:
            w.contribute(x, d)


@rule(Op.SILU_MUL)
def _silu_mul(w: _Walk, node: Node) -> None:
    d = w.grad_of(node.outputs[0])
    if d is None:
        return
    gu = node.inputs[0]
    dgu = w.new(f"d:{gu}", gu)
    w.g.op(Op.SILU_MUL_BWD, f"bwd.{node.name}", [gu, d], [dgu], ffn=node.attrs.ffn)
    w.contribute(gu, dgu)


@rule(Op.NORM)
def _norm(w: _Walk, node: Node) -> None:
    """dx (one row kernel); d gamma (and d beta) = column sums of dy * xhat (and of dy), as
    GEMMs of a ones column with them."""
    d = w.grad_of(node.outputs[0])
    if d is None:
        return
    x, gamma = node.inputs
    kind, eps = node.attrs.kind, node.attrs.eps
    # the norm feeds column-parallel projections: sum the ranks' parts (with sequence
    # parallelism the gather's backward, a reduce-scatter, has summed them; a per-head norm
    # of the rank's own heads has nothing to sum)
    if w.shard.tp > 1 and not w.shard.seq_split and not node.attrs.segment:
        w.g.op(Op.ALLREDUCE, f"bwd.{node.name}.allreduce", [d], [d], group=w.shard.group)
    n = w.g.tensors[gamma].shape[0]
    T, H = w.g.tensors[x].shape
    h = w.g.tensors[x].shape[1]  # dL/dx needs gamma (not a layernorm's beta) and eps
    params = w.g.add(Tensor(gamma + ".eps", (h + 1,), F32, Kind.WEIGHT))
    unit = w.g.add(Tensor(f"unit{n}", (n,), F32, Kind.WEIGHT))
    ones = w.ones(T)
    dx = w.new(f"d:{x}@{node.name}", x)
    w.g.op(Op.NORM_BWD, f"bwd.{node.name}", [x, d, params], [dx], kind=kind, eps=eps)
    xdy = w.new(f"{node.name}.xdy", x)
    w.g.op(Op.NORM_XDY, f"bwd.{node.name}.xdy", [x, d, unit], [xdy], kind=kind, eps=eps)
    gg, acc = w.weight_grad(gamma, (1, H))
    w.g.op(Op.LINEAR, f"bwd.{node.name}.dgamma", [ones, xdy], [gg], a_trans=True, residual=acc)
    if kind == "layernorm":
        gb, acc = w.weight_grad(gamma + ".beta", (1, H))
        w.g.op(Op.LINEAR, f"bwd.{node.name}.dbeta", [ones, d], [gb], a_trans=True, residual=acc)
    w.contribute(x, dx)


def constant_values(g: Graph, weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Functional data of the constants the backward pass added (from the forward's)."""
    out: dict[str, np.ndarray] = {}
    for name, t in g.tensors.items():
        if t.kind is not Kind.WEIGHT:
            continue
        if name.endswith(".inverse"):
            table = np.array(weights[name[:-len(".inverse")]], dtype=np.float64)
            half = table.shape[1] // 2
            table[:, half:] *= -1
            out[name] = table
        elif name.endswith(".eps"):
            node = next(n for n in g.nodes if n.op == Op.NORM_BWD and n.inputs[2] == name)
            gamma = weights[name[:-len(".eps")]][:t.shape[0] - 1]
            out[name] = np.concatenate([gamma, [node.attrs.eps]])
        elif name.startswith("unit"):
            kind = next(n.attrs.kind for n in g.nodes if n.op == Op.NORM_XDY
                        and n.inputs[2] == name)
            n = t.shape[0]
            out[name] = np.concatenate([np.ones(n // 2), np.zeros(n // 2)]) \
                if kind == "layernorm" else np.ones(n)
        elif name.startswith("ones"):
            out[name] = np.ones(t.shape)
    return out


__all__ = ["GRADS", "GradMode", "TrainingGraphError", "constant_values", "forward_nodes",
           "training_graph"]
