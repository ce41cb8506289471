"""Graph passes, each a small function Graph -> Graph (and the weights, in functional mode).

* ``quantize``: linear weights to int8 / int4 / fp8, symmetric (x_q = round(x / S), Z = 0),
  with per-output-channel scales (applied in the GEMM epilogue) or per-group scales along K
  (decoded before the array, one group per K-step); logarithmic ``log4`` (sign and 3-bit
  exponent: x ~ +-S 2^-e, so a multiply is a shift; decoded by table lookup, S per channel
  in the epilogue); clustered ``cluster16`` (a 16-entry k-means codebook per matrix,
  x_q = argmin_i |x - c_i|, decoded by table lookup).
* ``prune_24``: 2:4 structured sparsity by magnitude along K; GEMMs use the sparse mode.
* ``low_rank``: W[k,n] ~ U[k,r] V[r,n] by truncated SVD, as two chained GEMMs.
* ``fuse_norm_projection``: an RMSNorm feeding one projection is folded into it:
  rmsnorm(x) W = diag(1/rms(x)) x (diag(gamma) W), so gamma is folded into the weights, a
  small kernel computes 1/rms per row, and the GEMM reads x and scales its rows in the
  epilogue — the normalized activation never goes to HBM.
* ``unfuse``: with fusion off, residual adds and activations become kernels of their own
  (each a round trip through HBM), to measure what fusion saves.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from isa.dtypes import DType
from isa.errors import TesseraError
from mapper.graph import Graph, Kind, Node, Tensor
from mapper.ops import ActAttrs, EpsAttrs, LinearAttrs, Op, QmaxAttrs
from mapper.verify import verify

QUANT = {"int8": (DType.INT8, 127.0), "int4": (DType.INT4, 7.0), "fp8": (DType.FP8E4M3, 448.0),
         "fp4": (DType.FP4E2M1, 6.0)}
SCHEMES = (*QUANT, "log4", "cluster16")


class PassError(TesseraError, ValueError):
    """An option combination the passes cannot honour (named in the message)."""


def _sparsity(g: Graph, w: dict | None, o, notes: dict):  # noqa: ANN001, ANN202
    if o.sparsity != "2:4":
        raise PassError(f"--sparsity {o.sparsity}: only 2:4 is supported")
    return prune_24(g, w, notes)


def _quant(g: Graph, w: dict | None, o, notes: dict):  # noqa: ANN001, ANN202
    if o.sparsity:
        raise PassError("--quant with --sparsity is not supported (one weight format)")
    layers = None if o.quant_layers is None else set(o.quant_layers)
    return quantize(g, w, o.quant, notes, o.quant_group, layers)


# The passes, in order: (name, whether the options ask for it, the pass). Each maps
# (graph, weights, options, notes) to (graph, weights); the graph is verified after each.
def _eager(g: Graph, w: dict | None, o, notes: dict) -> tuple[Graph, dict | None]:  # noqa: ANN001
    from mapper.eager import eager_composites

    if o.functional:
        raise TesseraError("kernels: eager is a timing profile (its rotary kernels use timing "
                           "stand-ins); run functional mode with kernels: fused")
    return eager_composites(g), w


PASSES = (
    ("low_rank", lambda o: o.low_rank,  # SVD-factorised MLP projections
     lambda g, w, o, n: low_rank(g, w, o.low_rank, o.low_rank_targets, n)),
    ("sparsity", lambda o: o.sparsity, _sparsity),  # 2:4 pruned weights
    ("quantize", lambda o: o.quant, _quant),  # weight formats and their scales
    ("quantize_activations", lambda o: o.act_quant,  # per-token activation scales (W8A8)
     lambda g, w, o, n: quantize_activations(g, w, o.act_quant, n)),
    ("unfuse", lambda o: not o.fusion, lambda g, w, o, n: (unfuse(g), w)),  # epilogues apart
    ("eager", lambda o: o.kernels == "eager", _eager),  # composites as PyTorch's kernels
    ("fuse_norm_projection", lambda o: o.fusion,  # RMSNorm folded into the next GEMM
     lambda g, w, o, n: fuse_norm_projection(g, w, n)),
)


def apply_passes(graph: Graph, weights: dict | None, opts) -> tuple[Graph, dict | None, dict]:  # noqa: ANN001
    """The passes the options ask for, in order, each followed by the IR's checks."""
    notes: dict[str, object] = {}
    verify(graph, "build")
    for name, wanted, run in PASSES:
        if wanted(opts):
            graph, weights = run(graph, weights, opts, notes)
            verify(graph, name)
    return graph, weights, notes


PLAIN = ("scale", "decode", "sparse", "row_scale")  # attrs of weights already transformed


def _linears(graph: Graph) -> list[Node]:
    return [n for n in graph.nodes if n.op == Op.LINEAR]


def quantize(graph: Graph, weights: dict | None, scheme: str, notes: dict, group: int = 0,
             layers: set[int] | None = None) -> tuple[Graph, dict | None]:
    """Weights of the linear layers of ``layers`` (all when None) to ``scheme``: mixed
    precision per layer; see the module docstring."""
    if scheme not in QUANT and scheme not in ("log4", "cluster16"):
        raise PassError(f"--quant {scheme}: expected one of {', '.join(SCHEMES)}")
    if group and scheme not in QUANT:
        raise PassError(f"--quant-group applies to {', '.join(QUANT)}, not {scheme}")
    g = graph.copy()
    w_out = dict(weights) if weights is not None else None
    before = after = 0
    for i, node in enumerate(g.nodes):
        if node.op != Op.LINEAR or (layers is not None and _layer_of(node) not in layers) \
                or (node.attrs.groups > 1 and not node.attrs.group_rows):  # MLA's per-head
            continue  # absorbed products stay bf16
        wname = node.inputs[1]
        t = g.tensors[wname]
        if group and node.attrs.group_rows:
            raise PassError(f"--quant-group: {node.name} is a grouped (MoE) GEMM; its weights "
                            f"take per-channel scales (no --quant-group)")
        if group and t.shape[0] % group:
            raise PassError(f"--quant-group {group} does not divide K={t.shape[0]} of "
                            f"{node.name}")
        before += t.nbytes
        dt = QUANT[scheme][0] if scheme in QUANT else DType.INT4
        g.tensors[wname] = replace(t, dtype=dt)
        after += g.tensors[wname].nbytes
        g.nodes[i] = _quantized_node(g, node, scheme, group)
        if w_out is not None:
            _quantize_values(w_out, wname, scheme, group, dt)
    notes["quant"] = {"scheme": scheme, "group": group, "weight_bytes_before": before,
                      "weight_bytes_after": after}
    return g, w_out


def _layer_of(node: Node) -> int:
    """The layer index of a node named ``l<i>.<...>``."""
    head = node.name.split(".", 1)[0]
    return int(head[1:]) if head[:1] == "l" and head[1:].isdigit() else -1


def _quantized_node(g: Graph, node: Node, scheme: str, group: int) -> Node:
    wname = node.inputs[1]
    n = g.tensors[wname].shape[1] * max(1, len(node.attrs.group_rows))  # each group's N
    if scheme in QUANT and group:
        return node.with_attrs(decode="group", group=group)
    attrs: dict[str, object] = {}  # LinearAttrs fields
    if scheme != "cluster16":
        attrs["scale"] = g.add(Tensor(wname + ".scale", (n,), DType.FP32, Kind.WEIGHT))
    if scheme in ("log4", "cluster16"):
        attrs.update(decode="lut", table=g.add(Tensor(wname + ".table", (16,), DType.FP32,
                                                      Kind.WEIGHT)))
    return node.with_attrs(**attrs)


def _quantize_values(w_out: dict, wname: str, scheme: str, group: int, dt: DType) -> None:
    from isa.numerics import round_to

    w = np.asarray(w_out[wname], dtype=np.float64)
    if scheme in QUANT:
        qmax = QUANT[scheme][1]
        if group:
            s = np.abs(w).reshape(-1, group, w.shape[1]).max(axis=1) / qmax  # [K/g, N]
            s = np.maximum(s, 1e-12)
            if dt == DType.FP4E2M1:  # MX block scale: a power of two (E8M0), rounded up
                s = 2.0 ** np.ceil(np.log2(s))
            w_out[wname] = round_to(w / np.repeat(s, group, axis=0), dt)
            w_out[wname + ".gscale"] = s
        else:
            s = np.maximum(np.abs(w).max(axis=0), 1e-12) / qmax
            w_out[wname] = round_to(w / s, dt)  # the values the type holds, saturated
            w_out[wname + ".scale"] = s
    elif scheme == "log4":
        s = np.maximum(np.abs(w).max(axis=0), 1e-12)
        e = np.clip(np.round(-np.log2(np.maximum(np.abs(w) / s, 2.0 ** -8))), 0, 7)
        code = ((w < 0) << 3) | e.astype(np.int64)  # sign bit, 3-bit exponent
        w_out[wname] = np.where(code >= 8, code - 16, code)  # as int4
        w_out[wname + ".scale"] = s
        u = np.arange(16)
        w_out[wname + ".table"] = np.where(u >= 8, -1.0, 1.0) * 2.0 ** -(u & 7)
    else:  # cluster16: a 16-entry codebook for the whole matrix, by k-means (Lloyd)
        centres = np.quantile(w, (np.arange(16) + 0.5) / 16)
        for _ in range(12):
            code = np.abs(w[..., None] - centres).argmin(axis=-1)
            for c in range(16):
                if (code == c).any():
                    centres[c] = w[code == c].mean()
        code = np.abs(w[..., None] - centres).argmin(axis=-1)
        w_out[wname] = np.where(code >= 8, code - 16, code)
        w_out[wname + ".table"] = centres


def decoded_weights(weights: dict, wname: str) -> np.ndarray:
    """The real values quantized weights stand for (what a numpy reference should use)."""
    w = np.asarray(weights[wname], dtype=np.float64)
    if wname + ".table" in weights:
        w = weights[wname + ".table"][w.astype(np.int64) % 16]
    if wname + ".gscale" in weights:
        gs = weights[wname + ".gscale"]
        w = w * np.repeat(gs, w.shape[0] // gs.shape[0], axis=0)
    if wname + ".scale" in weights:
        w = w * weights[wname + ".scale"]
    return w


def prune_24(graph: Graph, weights: dict | None, notes: dict) -> tuple[Graph, dict | None]:
    from isa import sparsity as sx

    g = graph.copy()
    w_out = dict(weights) if weights is not None else None
    for i, node in enumerate(g.nodes):
        if node.op == Op.LINEAR:
            k = g.tensors[node.inputs[1]].shape[0]
            if k % 8:
                raise PassError(f"{node.name}: 2:4 sparsity needs K divisible by 8, got {k}")
            g.nodes[i] = node.with_attrs(sparse=True)
            if w_out is not None:
                w_out[node.inputs[1]] = sx.prune24_by_magnitude(w_out[node.inputs[1]])
    notes["sparsity"] = "2:4"
    return g, w_out


def low_rank(graph: Graph, weights: dict | None, rank: int, targets: tuple[str, ...],
             notes: dict) -> tuple[Graph, dict | None]:
    g = Graph(dict(graph.tensors), [])
    w_out = dict(weights) if weights is not None else None
    saved = []
    for node in graph.nodes:
        short = node.name.rsplit(".", 1)[-1]
        if node.op != Op.LINEAR or short not in targets:
            g.nodes.append(node)
            continue
        x, wname = node.inputs[0], node.inputs[1]
        k, n = graph.tensors[wname].shape
        if rank >= min(k, n):
            raise PassError(f"--low-rank {rank}: {node.name} is {k}x{n}, rank must be below "
                            f"{min(k, n)}")
        u = g.add(Tensor(wname + ".u", (k, rank), graph.tensors[wname].dtype, Kind.WEIGHT))
        v = g.add(Tensor(wname + ".v", (rank, n), graph.tensors[wname].dtype, Kind.WEIGHT))
        del g.tensors[wname]
        mid = g.add(Tensor(node.name + ".mid", (graph.tensors[x].shape[0], rank),
                           graph.tensors[x].dtype))
        g.nodes.append(Node(Op.LINEAR, node.name + ".u", (x, u), (mid,), LinearAttrs()))
        g.nodes.append(Node(Op.LINEAR, node.name + ".v", (mid, v, *node.inputs[2:]),
                            node.outputs, node.attrs))
        saved.append((node.name, k * n, rank * (k + n)))
        if w_out is not None:
            uu, s, vt = np.linalg.svd(w_out.pop(wname), full_matrices=False)
            root = np.sqrt(s[:rank])
            w_out[u], w_out[v] = uu[:, :rank] * root, root[:, None] * vt[:rank]
    notes["low_rank"] = {"rank": rank, "weights": saved}
    return g, w_out


def unfuse(graph: Graph) -> Graph:
    """Move GEMM epilogue activations and residual adds into kernels of their own. A
    row-parallel projection's residual (added by tensor rank 0 only when fused) is added by
    every rank after the all-reduce, so all ranks run the same kernels (Megatron's order)."""
    g = Graph(dict(graph.tensors), [])
    after: dict[str, Node] = {}  # all-reduced output -> the residual add that follows it
    for node in graph.nodes:
        if node.op == Op.ALLREDUCE and node.inputs[0] in after:
            g.nodes += [node, after.pop(node.inputs[0])]
            continue
        if node.op != Op.LINEAR:
            g.nodes.append(node)
            continue
        tp_res = node.attrs.tp_residual
        if tp_res:
            out = node.outputs[0]
            after[out] = Node(Op.ADD, node.name + ".residual", (out, tp_res), (out,))
            node = node.with_attrs(residual=None, tp_residual=None)
        act, res = node.attrs.act, node.attrs.residual
        if not (act or res):
            g.nodes.append(node)
            continue
        out = graph.tensors[node.outputs[0]]
        raw = g.add(Tensor(out.name + ".raw", out.shape, out.dtype))
        g.nodes.append(replace(node, outputs=(raw,), attrs=replace(node.attrs, act=None,
                                                                   residual=None)))
        src = raw
        if act:
            tmp = g.add(Tensor(out.name + ".act", out.shape, out.dtype)) if res else out.name
            g.nodes.append(Node(Op.ACT, node.name + ".act", (src,), (tmp,), ActAttrs(act)))
            src = tmp
        if res:
            g.nodes.append(Node(Op.ADD, node.name + ".residual", (src, res), (out.name,)))
    return g


def fuse_norm_projection(graph: Graph, weights: dict | None, notes: dict
                         ) -> tuple[Graph, dict | None]:
    consumers: dict[str, list[Node]] = {}
    for node in graph.nodes:
        for name in node.inputs:
            consumers.setdefault(name, []).append(node)
    fold: dict[str, Node] = {}  # linear node name -> the norm folded into it
    for node in graph.nodes:
        users = consumers.get(node.outputs[0], [])
        if node.op == Op.NORM and node.attrs.kind == "rmsnorm" and len(users) == 1 and \
                users[0].op == Op.LINEAR and users[0].inputs[0] == node.outputs[0] and \
                not users[0].attrs.bias and not any(getattr(users[0].attrs, a)
                                                    for a in PLAIN):
            fold[users[0].name] = node
    if not fold:
        return graph, weights
    g = Graph(dict(graph.tensors), [])
    folded = {n.name for n in fold.values()}
    for node in graph.nodes:
        if node.name in folded:
            x = node.inputs[0]
            rs = g.add(Tensor(node.name + ".rscale", (graph.tensors[x].shape[0], 1),
                              DType.FP32))
            eps = g.add(Tensor(node.name + ".eps", (1,), DType.FP32, Kind.WEIGHT))
            g.nodes.append(Node(Op.RMS_SCALE, node.name, (x, eps), (rs,),
                                EpsAttrs(node.attrs.eps)))
            if weights is not None:
                weights = {**weights, eps: np.array([node.attrs.eps])}
            continue
        norm = fold.get(node.name)
        if norm is not None:  # gamma is folded into W where the HBM image is written
            node = replace(node, inputs=(norm.inputs[0], *node.inputs[1:]),
                           attrs=replace(node.attrs, row_scale=norm.name + ".rscale",
                                         fold_gamma=norm.inputs[1]))
        g.nodes.append(node)
    notes["fused_norms"] = sorted(folded)
    return g, weights


ACT = {"int8": (DType.INT8, 127.0), "fp8": (DType.FP8E4M3, 448.0), "fp4": (DType.FP4E2M1, 6.0)}


def quantize_activations(graph: Graph, weights: dict | None, scheme: str, notes: dict
                         ) -> tuple[Graph, dict | None]:
    """W8A8: each per-channel-quantized projection gets its input quantized per token
    (dynamic absmax scales); the GEMM runs in the narrow type and the epilogue applies the
    token scale (rows) and the channel scale (columns)."""
    if scheme not in ACT:
        raise PassError(f"--act-quant {scheme}: expected one of {', '.join(ACT)}")
    dt, qmax = ACT[scheme]
    g = Graph(dict(graph.tensors), [])
    done = []
    for node in graph.nodes:
        if node.op != Op.LINEAR or not node.attrs.scale or \
                g.tensors[node.inputs[1]].dtype != dt:
            g.nodes.append(node)
            continue
        x = graph.tensors[node.inputs[0]]
        floor = g.add(Tensor(node.name + ".act_floor", (1,), DType.FP32, Kind.WEIGHT))
        xs = g.add(Tensor(node.name + ".act_scale", (x.shape[0], 1), DType.FP32))
        xq = g.add(Tensor(node.name + ".act_q", x.shape, dt))
        g.nodes.append(Node(Op.ACT_SCALE, node.name + ".act_scale", (x.name, floor), (xs,),
                            QmaxAttrs(qmax)))
        g.nodes.append(Node(Op.ACT_QUANT, node.name + ".act_quant", (x.name, xs), (xq,)))
        g.nodes.append(replace(node, inputs=(xq, *node.inputs[1:]),
                               attrs=replace(node.attrs, row_scale=xs)))
        if weights is not None:
            weights = {**weights, floor: np.array([1e-24])}  # squares: (1e-12)^2
        done.append(node.name)
    if not done:
        raise PassError(f"--act-quant {scheme} needs --quant {scheme} (weights and "
                        f"activations of one type)")
    notes["act_quant"] = {"scheme": scheme, "projections": done}
    return g, weights
