"""Graph passes, each a small function Graph -> Graph (and the weights, in functional mode).

* ``quantize``: linear weights to int8 / int4 / fp8 with per-output-channel scales
  (x_q = round(x / S), symmetric, Z = 0); the scale is applied in the GEMM epilogue.
* ``prune_24``: 2:4 structured sparsity by magnitude along K; GEMMs use the sparse mode.
* ``low_rank``: W[k,n] ~ U[k,r] V[r,n] by truncated SVD, as two chained GEMMs.
* ``unfuse``: with fusion off, residual adds and activations become kernels of their own
  (each a round trip through HBM), to measure what fusion saves.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from isa.dtypes import DType
from mapper.graph import Graph, Kind, Node, Tensor

QUANT = {"int8": (DType.INT8, 127.0), "int4": (DType.INT4, 7.0), "fp8": (DType.FP8E4M3, 448.0)}


class PassError(ValueError):
    """An option combination the passes cannot honour (named in the message)."""


def apply_passes(graph: Graph, weights: dict | None, opts) -> tuple[Graph, dict | None, dict]:  # noqa: ANN001
    notes: dict[str, object] = {}
    if opts.low_rank:
        graph, weights = low_rank(graph, weights, opts.low_rank, opts.low_rank_targets, notes)
    if opts.sparsity:
        if opts.sparsity != "2:4":
            raise PassError(f"--sparsity {opts.sparsity}: only 2:4 is supported")
        graph, weights = prune_24(graph, weights, notes)
    if opts.quant:
        if opts.quant_group:
            raise PassError("per-group quantization is not supported yet; use per-channel "
                            "(--quant-group 0)")
        graph, weights = quantize(graph, weights, opts.quant, notes)
    if not opts.fusion:
        graph = unfuse(graph)
    return graph, weights, notes


def _linears(graph: Graph) -> list[Node]:
    return [n for n in graph.nodes if n.op == "linear"]


def quantize(graph: Graph, weights: dict | None, scheme: str, notes: dict
             ) -> tuple[Graph, dict | None]:
    from simulator.numerics import round_to

    if scheme not in QUANT:
        raise PassError(f"--quant {scheme}: expected one of {', '.join(QUANT)} "
                        "(log4 and cluster16 are not supported yet)")
    dt, qmax = QUANT[scheme]
    g = graph.copy()
    w_out = dict(weights) if weights is not None else None
    before = after = 0
    for i, node in enumerate(g.nodes):
        if node.op != "linear":
            continue
        wname = node.inputs[1]
        t = g.tensors[wname]
        before += t.nbytes
        g.tensors[wname] = replace(t, dtype=dt)
        after += g.tensors[wname].nbytes
        sname = g.add(Tensor(wname + ".scale", (t.shape[1],), DType.FP32, Kind.WEIGHT))
        g.nodes[i] = node.with_attrs(scale=sname)
        if w_out is not None:
            w = w_out[wname]
            s = np.maximum(np.abs(w).max(axis=0), 1e-12) / qmax
            w_out[wname] = round_to(w / s, dt)  # the values the type holds, saturated
            w_out[sname] = s
    notes["quant"] = {"scheme": scheme, "weight_bytes_before": before,
                      "weight_bytes_after": after}
    return g, w_out


def prune_24(graph: Graph, weights: dict | None, notes: dict) -> tuple[Graph, dict | None]:
    from simulator import sparsity as sx

    g = graph.copy()
    w_out = dict(weights) if weights is not None else None
    for i, node in enumerate(g.nodes):
        if node.op == "linear":
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
        if node.op != "linear" or short not in targets:
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
        g.nodes.append(Node("linear", node.name + ".u", (x, u), (mid,), {"bias": False}))
        g.nodes.append(Node("linear", node.name + ".v", (mid, v, *node.inputs[2:]),
                            node.outputs, dict(node.attrs)))
        saved.append((node.name, k * n, rank * (k + n)))
        if w_out is not None:
            uu, s, vt = np.linalg.svd(w_out.pop(wname), full_matrices=False)
            root = np.sqrt(s[:rank])
            w_out[u], w_out[v] = uu[:, :rank] * root, root[:, None] * vt[:rank]
    notes["low_rank"] = {"rank": rank, "weights": saved}
    return g, w_out


def unfuse(graph: Graph) -> Graph:
    """Move GEMM epilogue activations and residual adds into kernels of their own."""
    g = Graph(dict(graph.tensors), [])
    for node in graph.nodes:
        act, res = node.attrs.get("act"), node.attrs.get("residual")
        if node.op != "linear" or not (act or res):
            g.nodes.append(node)
            continue
        out = graph.tensors[node.outputs[0]]
        raw = g.add(Tensor(out.name + ".raw", out.shape, out.dtype))
        g.nodes.append(replace(node, outputs=(raw,), attrs={k: v for k, v in node.attrs.items()
                                                            if k not in ("act", "residual")}))
        src = raw
        if act:
            tmp = g.add(Tensor(out.name + ".act", out.shape, out.dtype)) if res else out.name
            g.nodes.append(Node("act", node.name + ".act", (src,), (tmp,), {"fn": act}))
            src = tmp
        if res:
            g.nodes.append(Node("add", node.name + ".residual", (src, res), (out.name,), {}))
    return g
