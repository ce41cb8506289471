"""Streamed row reductions (mapper.kernels.rowstream): correct numbers for any row width,
and the latency of a few wide rows coming out of the DMA round trips."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from isa import DType, Space
from isa import numerics as nx
from mapper import reference as ref
from mapper.graph import Graph, Kind, Tensor
from mapper.lower import lower
from mapper.ops import Op
from simulator.run import simulate
from tests.simulator.conftest import make_chip


def graph(kind: str, rows: int, cols: int, stream: bool = True) -> Graph:
    g = Graph()
    g.add(Tensor("x", (rows, cols), DType.BF16, Kind.INPUT))
    g.add(Tensor("y", (rows, cols), DType.BF16))
    if kind == "softmax":
        g.op(Op.ACT, "sm", ["x"], ["y"], fn="softmax", stream=stream)
    else:
        g.add(Tensor("g", (cols * (2 if kind == "layernorm" else 1),), DType.FP32,
                     Kind.WEIGHT))
        g.op(Op.NORM, "n", ["x", "g"], ["y"], kind=kind, eps=1e-5, stream=stream)
    return g


def chip_with(cores: int, row_elems: int, sram: int = 1 << 20):
    c = make_chip(cores=cores)
    core = dataclasses.replace(
        c.core, vector=dataclasses.replace(c.core.vector, row_elems=row_elems),
        sram=dataclasses.replace(c.core.sram, capacity=sram))
    return dataclasses.replace(c, core=core)


def expected(kind: str, x: np.ndarray, g: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    if kind == "softmax":
        e = np.exp(x - x.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)
    cols = x.shape[1]
    if kind == "rmsnorm":
        return x / np.sqrt((x * x).mean(1, keepdims=True) + 1e-5) * g
    mu = x.mean(1, keepdims=True)
    return (x - mu) / np.sqrt(x.var(1, keepdims=True) + 1e-5) * g[:cols] + g[cols:]


@pytest.mark.parametrize("kind", ["rmsnorm", "layernorm", "softmax"])
@pytest.mark.parametrize("rows,cols,cores", [(3, 1000, 2), (37, 640, 3)])
def test_streamed_rows_match_numpy(kind, rows, cols, cores):
    """Ragged chunks (1000 = 7 x 128 + 104), ragged groups, more rows than one group, and
    a middle of whole chunks that loops; the output equals numpy's within bf16."""
    chip = chip_with(cores, row_elems=128)
    rng = np.random.default_rng(rows)
    x = ref.bf16(rng.standard_normal((rows, cols)) * 2 + 0.5)
    g = rng.standard_normal(cols * (2 if kind == "layernorm" else 1)).astype(np.float32)
    low = lower(graph(kind, rows, cols), chip, weights={"g": g}, inputs={"x": x})
    r = simulate(low.programs, chip, functional=True)
    assert r.races == ()
    n = rows * cols
    got = nx.from_bytes(r.read(Space.HBM, low.addresses["y"], 2 * n), DType.BF16, n)
    got = got.reshape(rows, cols)
    want = expected(kind, x, g)
    np.testing.assert_allclose(got, want, rtol=2e-2, atol=2e-2 * np.abs(want).max())


def test_a_row_wider_than_the_sram_maps_by_streaming():
    """A norm whose one row cannot be staged (8k bf16 columns in, out, gamma > 16 KiB)
    maps anyway, and without ``stream`` the same graph streams for the same reason."""
    chip = chip_with(2, row_elems=0, sram=16 << 10)
    for stream in (True, False):
        low = lower(graph("rmsnorm", 4, 8192, stream), chip)
        assert simulate(low.programs, chip).time_s > 0


def test_few_wide_rows_are_a_chain_of_round_trips():
    """One row streamed in 16 chunks over 2 passes waits for about 16 DMA round trips (two
    buffers: a chunk's load overlaps the previous chunk's math), so 0.9 us more latency
    costs it ~14 us; the same row staged in SRAM waits for one load and pays ~1 us."""
    def run(latency: float, stream: bool) -> float:
        c = chip_with(1, row_elems=1024)
        c = dataclasses.replace(c, core=dataclasses.replace(
            c.core, dma=dataclasses.replace(c.core.dma, latency=latency)))
        return simulate(lower(graph("rmsnorm", 1, 16384, stream), c).programs, c).time_s

    streamed = run(1e-6, True) - run(0.1e-6, True)
    staged = run(1e-6, False) - run(0.1e-6, False)
    assert 12e-6 < streamed < 18e-6
    assert staged < 2e-6


def bwd_graph(kind: str, rows: int, cols: int) -> Graph:
    g = Graph()
    for name in ("x", "dy"):
        g.add(Tensor(name, (rows, cols), DType.BF16, Kind.INPUT))
    g.add(Tensor("p", (cols + 1,), DType.FP32, Kind.WEIGHT))  # gamma, then eps
    g.add(Tensor("u", (cols * (2 if kind == "layernorm" else 1),), DType.FP32, Kind.WEIGHT))
    g.add(Tensor("dx", (rows, cols), DType.BF16))
    g.add(Tensor("xdy", (rows, cols), DType.BF16))
    g.op(Op.NORM_BWD, "bwd", ["x", "dy", "p"], ["dx"], kind=kind, eps=1e-5)
    g.op(Op.NORM_XDY, "xdy", ["x", "dy", "u"], ["xdy"], kind=kind, eps=1e-5)
    return g


@pytest.mark.parametrize("kind", ["rmsnorm", "layernorm"])
def test_streamed_norm_gradients_equal_the_staged_kernels(kind):
    """A norm's backward (dL/dx, and dy times the normalised x) on a chip whose SRAM cannot
    hold a row streams it in two passes; its numbers are the staged kernels' (which the
    finite-difference tests check) on a chip where the row fits."""
    rows, cols = 5, 1200
    rng = np.random.default_rng(7)
    x, dy = (ref.bf16(rng.standard_normal((rows, cols)) + 0.3) for _ in range(2))
    gamma = rng.standard_normal(cols).astype(np.float32)
    unit = np.concatenate([np.ones(cols), np.zeros(cols)]) if kind == "layernorm" \
        else np.ones(cols)
    weights = {"p": np.concatenate([gamma, [1e-5]]).astype(np.float32),
               "u": unit.astype(np.float32)}
    out = {}
    for name, chip in (("staged", chip_with(2, row_elems=256)),
                       ("streamed", chip_with(2, row_elems=256, sram=10 << 10))):
        low = lower(bwd_graph(kind, rows, cols), chip, weights=weights,
                    inputs={"x": x, "dy": dy})
        whole = {i.mnemonic for prog in low.programs.values() for i in prog.instructions}
        assert ("v.rmsgrad" in whole or "v.lngrad" in whole) == (name == "staged")
        r = simulate(low.programs, chip, functional=True)
        out[name] = [nx.from_bytes(r.read(Space.HBM, low.addresses[t], 2 * rows * cols),
                                   DType.BF16, rows * cols) for t in ("dx", "xdy")]
    for staged, streamed in zip(out["staged"], out["streamed"]):
        np.testing.assert_allclose(streamed, staged, rtol=3e-2,
                                   atol=3e-2 * np.abs(staged).max())
