"""What ``tessera run --functional`` shows: real output values, checked against numpy.

The mapped layers ran on the simulated chip with real bf16 data; the same layers are run
again by ``mapper.reference`` (an independent numpy forward pass written from the model
definition, not from the mapper) on the same input and weights, and the largest
difference is reported in units of bf16 rounding of the largest value.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from isa import Space
from isa import numerics as nx
from mapper import reference as ref


def _read(run, name: str) -> np.ndarray:  # noqa: ANN001
    t = run.mapped.graph.tensors[name]
    raw = run.layer.read(Space.HBM, run.mapped.lowered.addresses[name], t.nbytes)
    return nx.from_bytes(raw, t.dtype, t.elements).reshape(t.shape).astype(np.float64)


def check(model, run) -> dict:  # noqa: ANN001
    """{'output': last layer's output [tokens, hidden], 'reference': numpy's, 'max_error',
    'ulps': max error / one bf16 unit of the largest reference value}."""
    phase = run.mapped.phase
    x = ref.bf16(np.asarray(run.mapped.inputs["x0"], dtype=np.float64))
    zeros = np.zeros((phase.batch, model.kv_heads, phase.past, model.head_dim))
    zeros_v = zeros
    if getattr(model, "kv_lora_rank", 0):  # MLA: the latent and rotary-key caches
        zeros = np.zeros((phase.batch, phase.past, model.kv_lora_rank))
        zeros_v = np.zeros((phase.batch, phase.past, model.rope_dim))
    for li in range(model.layers):  # the caches of a run start empty (zeros)
        x = ref.layer(model, run.mapped.weights, li, x, phase.batch, phase.past, zeros,
                      zeros_v)[0]
    got = _read(run, f"x{model.layers}")
    scale = float(np.abs(x).max())
    ulp = 2.0 ** (np.floor(np.log2(max(scale, 1e-30))) - 7)
    err = float(np.abs(got - x).max())
    return {"output": got, "reference": x, "max_error": err, "ulps": err / ulp}


def describe(found: dict, out: Path) -> str:
    """Lines for the console: a few values, the check, and where all of them are."""
    np.savez(out / "outputs.npz", output=found["output"], reference=found["reference"])
    head = ", ".join(f"{v:.4g}" for v in found["output"][0, :6])
    return (f"functional: output[0, :6] = [{head}, ...]\n"
            f"functional: numpy reference max |error| {found['max_error']:.3g} "
            f"({found['ulps']:.1f} bf16 units of the largest value); all values in "
            f"{out / 'outputs.npz'}")
