"""The GEMMs of a backward pass read their operands transposed where the forward pass
stored them: dX = dY @ W^T (W as stored, read with ``tw``) and dW = X^T @ dY (X and dY as
activations, X read with ``ta``), with no transposed copy in HBM."""

from __future__ import annotations

import numpy as np
import pytest

from isa import DType
from mapper import reference as ref
from mapper.graph import Graph, Kind, Tensor
from mapper.kernels.gemm import Tiling
from mapper.lower import lower
from simulator.run import simulate
from tests.mapper.test_pipelines import read
from tests.simulator.conftest import make_chip


def _run(monkeypatch, g: Graph, tiling: Tiling | None, weights, inputs, cores=2):
    import mapper.lower as low

    if tiling is not None:
        monkeypatch.setattr(low, "_choose_tilings", lambda *a: {"lin": tiling})
    chip = make_chip(cores=cores)
    lo = lower(g, chip, weights=weights, inputs=inputs)
    r = simulate(lo.programs, chip, functional=True)
    assert r.races == ()
    return lo, r


@pytest.mark.parametrize("tiling", [Tiling(16, 16, 16), Tiling(16, 16, 16, stages=3), None])
def test_data_gradient_reads_w_transposed(monkeypatch, tiling):
    t, k_in, n_out = 40, 48, 72  # ragged tiles in every dimension
    rng = np.random.default_rng(2)
    dy = ref.bf16(rng.standard_normal((t, n_out)))
    w = ref.bf16(rng.standard_normal((k_in, n_out)))
    g = Graph()
    g.add(Tensor("dy", (t, n_out), DType.BF16, Kind.INPUT))
    g.add(Tensor("w", (k_in, n_out), DType.BF16, Kind.WEIGHT))
    g.add(Tensor("dx", (t, k_in), DType.BF16))
    g.op("linear", "lin", ["dy", "w"], ["dx"], w_trans=True)
    lo, r = _run(monkeypatch, g, tiling, {"w": w}, {"dy": dy})
    want = ref.bf16(dy @ w.T)
    got = read(r, lo.addresses["dx"], (t, k_in))
    np.testing.assert_allclose(got, want, rtol=2 ** -7, atol=2 ** -7 * np.abs(want).max())


@pytest.mark.parametrize("tiling", [Tiling(16, 16, 16), Tiling(16, 32, 16, stages=4), None])
def test_weight_gradient_reads_x_transposed_and_accumulates(monkeypatch, tiling):
    t, k_in, n_out = 72, 40, 56
    rng = np.random.default_rng(3)
    x = ref.bf16(rng.standard_normal((t, k_in)))
    dy = ref.bf16(rng.standard_normal((t, n_out)))
    prev = rng.standard_normal((k_in, n_out)).astype(np.float32)
    g = Graph()
    g.add(Tensor("x", (t, k_in), DType.BF16, Kind.INPUT))
    g.add(Tensor("dy", (t, n_out), DType.BF16, Kind.INPUT))
    g.add(Tensor("gw", (k_in, n_out), DType.FP32, Kind.INPUT))
    g.op("linear", "lin", ["x", "dy"], ["gw"], a_trans=True, residual="gw")
    lo, r = _run(monkeypatch, g, tiling, {}, {"x": x, "dy": dy, "gw": prev})
    from isa import numerics as nx

    raw = r.read(__import__("isa").Space.HBM, lo.addresses["gw"], 4 * k_in * n_out)
    got = nx.from_bytes(raw, DType.FP32, k_in * n_out).reshape(k_in, n_out)
    want = prev + x.astype(np.float64).T @ dy
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4 * np.abs(want).max())
