"""The mapper's graph IR: named tensors and the ops between them, in execution order.

Small on purpose: ops are ``mapper.ops.Op`` members with typed attributes; passes are
functions from Graph to Graph that rewrite ``nodes`` or a node's ``attrs`` (a weight's data
type, a fused epilogue, a low-rank split), checked by ``mapper.verify`` after each.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

from isa.dtypes import DType
from mapper.ops import ATTRS, NoAttrs, Op, make_attrs


class Kind(Enum):
    WEIGHT = "weight"  # lives in HBM before the run
    ACTIVATION = "activation"  # produced and consumed during the run
    INPUT = "input"
    KV_CACHE = "kv_cache"


@dataclass(frozen=True)
class Tensor:
    name: str
    shape: tuple[int, ...]
    dtype: DType
    kind: Kind = Kind.ACTIVATION

    @property
    def elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def nbytes(self) -> int:
        return self.dtype.nbytes(self.elements)


@dataclass(frozen=True)
class Node:
    """An op (``mapper.ops.Op``) with its typed attributes (``mapper.ops.ATTRS[op]``)."""

    op: Op
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: Any = field(default_factory=NoAttrs)

    def __post_init__(self) -> None:
        object.__setattr__(self, "op", Op(self.op))
        if not isinstance(self.attrs, ATTRS[self.op]):
            raise TypeError(f"{self.name}: op {self.op.value} needs "
                            f"{ATTRS[self.op].__name__}, got {type(self.attrs).__name__}")

    def with_attrs(self, **kw: object) -> Node:
        return replace(self, attrs=replace(self.attrs, **kw))


@dataclass
class Graph:
    tensors: dict[str, Tensor] = field(default_factory=dict)
    nodes: list[Node] = field(default_factory=list)

    def add(self, t: Tensor) -> str:
        if t.name in self.tensors and self.tensors[t.name] != t:
            raise ValueError(f"tensor {t.name} redefined")
        self.tensors[t.name] = t
        return t.name

    def op(self, op: Op | str, name: str, inputs: list[str], outputs: list[str],
           **attrs: object) -> Node:
        """Append a node; ``attrs`` are the fields of the op's attributes type."""
        node = Node(Op(op), name, tuple(inputs), tuple(outputs),
                    make_attrs(Op(op), name, **attrs))
        self.nodes.append(node)
        return node

    def copy(self) -> Graph:
        return Graph(dict(self.tensors), list(self.nodes))

    def weights(self) -> list[Tensor]:
        return [t for t in self.tensors.values() if t.kind is Kind.WEIGHT]
