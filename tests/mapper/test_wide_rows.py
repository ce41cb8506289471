"""Element-wise kernels over rows wider than the SRAM stream column blocks (exact values)."""

from __future__ import annotations

import dataclasses

import numpy as np

from isa import DType, Space
from isa import numerics as nx
from mapper import reference as ref
from mapper.graph import Graph, Kind, Tensor
from mapper.lower import lower
from simulator.run import simulate
from tests.simulator.conftest import make_chip

SMALL_SRAM = 16 << 10  # one bf16 row of 4096 columns, double-buffered in and out, is 32 KiB


def _small_chip(cores: int = 3):
    chip = make_chip(cores=cores)
    return dataclasses.replace(chip, core=dataclasses.replace(
        chip.core, sram=dataclasses.replace(chip.core.sram, capacity=SMALL_SRAM)))


def _run(graph: Graph, inputs: dict[str, np.ndarray], out: str, chip):
    low = lower(graph, chip, {}, inputs)
    res = simulate(low.programs, chip, functional=True)
    t = graph.tensors[out]
    raw = res.read(Space.HBM, low.addresses[out], t.nbytes)
    return nx.from_bytes(raw, t.dtype, t.elements).reshape(t.shape), res


def test_silu_mul_wider_than_sram_matches_numpy():
    rows, ffn = 5, 4096
    g = Graph()
    g.add(Tensor("gu", (rows, 2 * ffn), DType.BF16, Kind.INPUT))
    g.add(Tensor("h", (rows, ffn), DType.BF16))
    g.op("silu_mul", "l0.silu_mul", ["gu"], ["h"], ffn=ffn)
    gu = ref.bf16(np.random.default_rng(1).standard_normal((rows, 2 * ffn)))
    got, res = _run(g, {"gu": gu}, "h", _small_chip())
    gate, up = gu[:, :ffn], gu[:, ffn:]
    silu = ref.bf16(gate / (1 + np.exp(-gate)))
    want = ref.bf16(silu * up)
    assert res.races == ()
    assert np.abs(got - want).max() <= 2 * 2.0 ** (np.floor(np.log2(np.abs(want).max())) - 7)


def test_add_wider_than_sram_matches_numpy():
    rows, cols = 3, 6000  # not a multiple of the block width: a ragged last block
    g = Graph()
    for name in ("a", "b"):
        g.add(Tensor(name, (rows, cols), DType.BF16, Kind.INPUT))
    g.add(Tensor("y", (rows, cols), DType.BF16))
    g.op("add", "l0.add", ["a", "b"], ["y"])
    rng = np.random.default_rng(2)
    a, b = (ref.bf16(rng.standard_normal((rows, cols))) for _ in range(2))
    got, _ = _run(g, {"a": a, "b": b}, "y", _small_chip())
    assert np.array_equal(got, ref.bf16(a + b))


def test_norm_wider_than_sram_streams_and_matches_numpy():
    """Not one 8192-wide row fits the small SRAM to be staged: the norm streams it chunk by
    chunk, once per pass (mapper.kernels.rowstream), and the numbers are numpy's."""
    rows, cols = 2, 8192
    g = Graph()
    g.add(Tensor("x", (rows, cols), DType.BF16, Kind.INPUT))
    g.add(Tensor("w", (cols,), DType.FP32, Kind.WEIGHT))
    g.add(Tensor("y", (rows, cols), DType.BF16))
    g.op("norm", "l0.norm1", ["x", "w"], ["y"], kind="rmsnorm", eps=1e-5)
    rng = np.random.default_rng(3)
    x = ref.bf16(rng.standard_normal((rows, cols)))
    w = rng.standard_normal(cols).astype(np.float32)
    chip = _small_chip()
    low = lower(g, chip, {"w": w}, {"x": x})
    res = simulate(low.programs, chip, functional=True)
    got = nx.from_bytes(res.read(Space.HBM, low.addresses["y"], 2 * rows * cols), DType.BF16,
                        rows * cols).reshape(rows, cols)
    want = x / np.sqrt((x.astype(np.float64) ** 2).mean(1, keepdims=True) + 1e-5) * w
    np.testing.assert_allclose(got, want, rtol=2e-2, atol=2e-2 * np.abs(want).max())


def test_few_wide_rows_of_an_elementwise_op_fill_the_cores_and_match_numpy():
    """A GPU's element-wise kernel sees flat elements: 2 rows of 4096 on 8 cores run as 8
    rows of 1024, one a core, not 2 rows on 2 cores."""
    from mapper.lowerings import flat_rows

    assert flat_rows(2, 4096, 8) == (8, 1024)
    assert flat_rows(1, 16384, 132) == (128, 128)
    assert flat_rows(200, 64, 132) == (200, 64)  # the rows already fill the cores
    assert flat_rows(1, 100, 4) == (1, 100)  # no even cut into 64-element rows
    g = Graph()
    for name in ("a", "b"):
        g.add(Tensor(name, (2, 4096), DType.BF16, Kind.INPUT))
    g.add(Tensor("y", (2, 4096), DType.BF16))
    g.op("add", "l0.add", ["a", "b"], ["y"])
    rng = np.random.default_rng(3)
    a, b = (ref.bf16(rng.standard_normal((2, 4096))) for _ in range(2))
    chip = make_chip(cores=8)
    assert len(lower(g, chip).programs) == 8
    got, res = _run(g, {"a": a, "b": b}, "y", chip)
    assert res.races == () and np.array_equal(got, ref.bf16(a + b))
