"""Map a training micro-batch: the forward and backward graph of some layers, lowered once.

The caller prices its kernels (forward ones and backward ones apart: ``Lowered.kernels``
names each, and ``forward_nodes`` says where the backward starts) or, in functional mode,
reads the gradients from HBM.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hardware.chip import ChipConfig
from mapper.backward import constant_values, training_graph
from mapper.graph import Graph
from mapper.layers import Phase
from mapper.lower import Lowered, lower
from mapper.weights import add_rope_tables, init_weights


@dataclass
class MappedTraining:
    graph: Graph
    lowered: Lowered
    phase: Phase
    weights: dict[str, np.ndarray] | None
    inputs: dict[str, np.ndarray]


def map_training(model, chip: ChipConfig, phase: Phase, layers: int = 1,  # noqa: ANN001
                 functional: bool = False, seed: int = 3, confirm=None,  # noqa: ANN001
                 inputs: dict[str, np.ndarray] | None = None) -> MappedTraining:
    """Forward + backward of ``layers`` layers for one micro-batch (``phase``: prefill)."""
    g = training_graph(model, phase, layers)
    weights = None
    ins = dict(inputs or {})
    if functional:
        weights = init_weights(g, seed)
        add_rope_tables(g, weights, phase.batch)
        weights.update(constant_values(g, weights))
        rng = np.random.default_rng(seed + 1)
        for name in ("x0", f"d:x{layers}"):
            ins.setdefault(name, rng.standard_normal(g.tensors[name].shape))
    # weights row-major, as a framework keeps them: the data gradient reads them transposed
    low = lower(g, chip, weights, ins if functional else None, confirm,
                3 if confirm else 1, layout="row")
    return MappedTraining(g, low, phase, weights, ins)


__all__ = ["MappedTraining", "map_training"]
