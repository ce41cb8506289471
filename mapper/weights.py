"""Deterministic weights and inputs for functional runs, from a recorded seed.

Scales keep activations O(1) through a stack of layers (linear weights ~ N(0, 1/k)), so a
numerics check exercises real rounding rather than zeros or overflow.
"""

from __future__ import annotations

import numpy as np

from mapper.graph import Graph, Kind
from mapper.ops import Op


def init_weights(graph: Graph, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for name, t in graph.tensors.items():
        if t.kind is not Kind.WEIGHT or name.endswith("rope.table"):
            continue
        if name.endswith(".b"):
            out[name] = 0.02 * rng.standard_normal(t.shape)
        elif len(t.shape) == 1:  # norm: gamma (then beta for layernorm)
            gamma = 1.0 + 0.1 * rng.standard_normal(t.shape)
            half = t.shape[0] // 2
            if "layernorm" in name or (graph_norm_kind(graph, name) == "layernorm"):
                gamma[half:] = 0.1 * rng.standard_normal(half)
            out[name] = gamma
        else:
            out[name] = rng.standard_normal(t.shape) / np.sqrt(t.shape[0])
    return out


def graph_norm_kind(graph: Graph, weight: str) -> str | None:
    for node in graph.nodes:
        if node.op == Op.NORM and node.inputs[1] == weight:
            return node.attrs.kind
    return None


def rope_table(positions: np.ndarray, hd: int, theta: float) -> np.ndarray:
    """Per token: cos(pos * f_i) for i < hd/2, then sin(pos * f_i); f_i = theta^(-2i/hd)."""
    freq = theta ** (-np.arange(0, hd, 2) / hd)
    angle = positions[:, None] * freq[None, :]
    return np.concatenate([np.cos(angle), np.sin(angle)], axis=1)


def add_rope_tables(graph: Graph, weights: dict[str, np.ndarray], batch: int) -> None:
    for node in graph.nodes:
        if node.op == Op.ROPE:
            pos = node.attrs.pos0 + np.arange(node.attrs.seq)
            table = rope_table(np.tile(pos, batch), node.attrs.hd, node.attrs.theta)
            weights[node.inputs[1]] = table
