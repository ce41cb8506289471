"""Run a mapped model functionally and compare each layer with the numpy reference."""

from __future__ import annotations

import numpy as np

from isa import DType, Space
from isa import numerics as nx
from mapper import reference as ref
from mapper.layers import Phase
from mapper.pipeline import MapOptions, map_model
from simulator.run import simulate
from tests.simulator.conftest import make_chip


def bf16_ulp(x: float) -> float:
    return 2.0 ** (np.floor(np.log2(max(abs(x), 1e-30))) - 7)


def run_functional(model, phase: Phase, opts: MapOptions | None = None, cores: int = 4,
                   seed: int = 5):
    """(mapped, result, cache inputs) with random bf16 caches for decode."""
    rng = np.random.default_rng(seed)
    inputs, caches = {}, {}
    if phase.kind == "decode":
        for li in range(model.layers):
            for kv in ("k", "v"):
                c = ref.bf16(rng.standard_normal((phase.batch, model.kv_heads, phase.ctx,
                                                  model.head_dim)))
                caches[(li, kv)] = c
                full = np.zeros((phase.batch, model.kv_heads, phase.ctx + 1, model.head_dim))
                full[:, :, :phase.ctx] = c
                inputs[f"l{li}.{kv}_cache"] = full
    opts = opts or MapOptions(functional=True, layers_mapped=None, seed=3)
    chip = make_chip(cores=cores)
    mapped = map_model(model, chip, phase, opts, inputs=inputs)
    result = simulate(mapped.lowered.programs, chip, functional=True)
    return mapped, result, caches


def read(mapped, result, name: str, shape: tuple[int, ...]) -> np.ndarray:
    n = int(np.prod(shape))
    raw = result.read(Space.HBM, mapped.lowered.addresses[name], DType.BF16.nbytes(n))
    return nx.from_bytes(raw, DType.BF16, n).reshape(shape)


def compare_layers(model, mapped, result, caches, weights=None):
    """Per layer: (max |error|, max |reference|) for the output and the new K cache."""
    phase = mapped.phase
    x = ref.bf16(mapped.inputs["x0"])
    out = []
    for li in range(model.layers):
        y, kc, _ = ref.layer(model, weights or mapped.weights, li, x, phase.batch, phase.past,
                             caches.get((li, "k")), caches.get((li, "v")))
        got = read(mapped, result, f"x{li + 1}", y.shape)
        got_k = read(mapped, result, f"l{li}.k_cache", kc.shape)
        out.append((float(np.abs(got - y).max()), float(np.abs(y).max()),
                    float(np.abs(got_k - kc).max()), float(np.abs(kc).max())))
        x = y
    return out
