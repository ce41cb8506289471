"""Check a graph against the IR's rules, after it is built and after every pass.

A pass that leaves a node reading a tensor nobody defined, a LINEAR whose shapes do not
chain, or an attribute naming a missing tensor fails here, naming the pass and the node,
instead of as a wrong address or a crash deep in lowering.
"""

from __future__ import annotations

from isa.errors import TesseraError
from mapper.graph import Graph, Kind
from mapper.ops import ATTRS, TENSOR_ATTRS, Op

PRESENT = (Kind.INPUT, Kind.WEIGHT, Kind.KV_CACHE)  # in HBM before the graph runs


class GraphError(TesseraError, ValueError):
    """The graph breaks a rule of the IR (a bug of a pass or a builder)."""


def verify(g: Graph, after: str = "build") -> None:
    """Raise a GraphError naming ``after`` (the pass) and the node at the first broken rule."""
    defined = {name for name, t in g.tensors.items() if t.kind in PRESENT}
    for node in g.nodes:
        where = f"after {after}: {node.name} ({node.op.value})"
        if not isinstance(node.attrs, ATTRS[node.op]):
            raise GraphError(f"{where}: attributes are {type(node.attrs).__name__}, not "
                             f"{ATTRS[node.op].__name__}")
        for name in (*node.inputs, *node.outputs):
            if name not in g.tensors:
                raise GraphError(f"{where}: no tensor '{name}'")
        missing = [n for n in node.inputs if n not in defined]
        if missing and node.op != Op.PLACE_ROWS:
            raise GraphError(f"{where}: reads '{missing[0]}' before anything writes it")
        if node.op == Op.LINEAR:
            _linear(g, node, where)
        defined.update(node.outputs)
        if node.op == Op.PLACE_ROWS:
            defined.update(node.inputs)


def _linear(g: Graph, node, where: str) -> None:  # noqa: ANN001
    a, w = g.tensors[node.inputs[0]], g.tensors[node.inputs[1]]
    out = g.tensors[node.outputs[0]]
    if len(a.shape) != 2 or len(w.shape) != 2:
        raise GraphError(f"{where}: x {a.shape} @ W {w.shape} are not matrices")
    (m, k) = a.shape[::-1] if node.attrs.a_trans else a.shape
    (kw, n) = w.shape[::-1] if node.attrs.w_trans else w.shape
    if node.attrs.groups > 1:
        n *= node.attrs.groups  # x [M, G*K] @ W [G*K, N] per group -> [M, G*N]
    if node.attrs.group_rows:  # x [sum rows, K] @ W [G*K, N] per row group -> [sum rows, N]
        if sum(node.attrs.group_rows) != m:
            raise GraphError(f"{where}: row groups {node.attrs.group_rows} do not add up to "
                             f"the {m} rows of x")
        kw //= len(node.attrs.group_rows)
    if k != kw:
        raise GraphError(f"{where}: x {a.shape} @ W {w.shape} do not chain")
    if out.shape != (m, n):
        raise GraphError(f"{where}: output {out.shape}, expected {(m, n)}")
    if node.attrs.bias and len(node.inputs) < 3:
        raise GraphError(f"{where}: bias set but no bias input")
    for attr in TENSOR_ATTRS:
        name = getattr(node.attrs, attr)
        if name and name not in g.tensors:
            raise GraphError(f"{where}: {attr} names no tensor ('{name}')")
