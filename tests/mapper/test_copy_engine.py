"""A whole-tensor copy as a GPU driver runs it: small copies are an element-wise kernel over
the cores; from ``copy_engine.min_bytes`` on, the chip's copy engine moves the bytes at its
own rate (``dma.memcpy``), exactly and at that rate."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from hardware.chip import CopyEngineConfig
from isa import DType, Space
from isa import numerics as nx
from mapper.graph import Graph, Kind, Tensor
from mapper.lower import lower
from mapper.lowerings import MappingError
from mapper.ops import Op
from simulator.run import simulate
from tests.simulator.conftest import make_chip


def copy_graph(rows: int, cols: int, out_dtype: DType = DType.BF16) -> Graph:
    g = Graph()
    g.add(Tensor("x", (rows, cols), DType.BF16, Kind.INPUT))
    g.add(Tensor("y", (rows, cols), out_dtype))
    g.op(Op.COPY, "copy", ["x"], ["y"])
    return g


def with_engine(bandwidth: float, min_bytes: int, cores: int = 4):
    return dataclasses.replace(make_chip(cores=cores),
                               copy_engine=CopyEngineConfig(bandwidth, min_bytes))


def mnemonics(low) -> set[str]:
    return {i.spec.mnemonic for p in low.programs.values() for i in p.instructions}


def test_a_copy_on_the_engine_moves_the_bytes_exactly():
    # 5000 x 7 elements: one full 4096-column block of rows and a ragged rest
    x = nx.round_to(np.random.default_rng(0).standard_normal((5000, 7)), DType.BF16)
    low = lower(copy_graph(5000, 7), with_engine(1e11, 0), weights={}, inputs={"x": x})
    assert "dma.memcpy" in mnemonics(low)
    r = simulate(low.programs, with_engine(1e11, 0), functional=True)
    got = nx.from_bytes(r.read(Space.HBM, low.addresses["y"], 2 * x.size), DType.BF16,
                        x.size).reshape(x.shape)
    np.testing.assert_array_equal(got, x)


def test_the_engine_runs_at_its_own_rate_and_counts_the_traffic():
    chip = with_engine(1e11, 0)  # 100 GB/s, under the test chip's HBM
    n = 2 * 4096 * 512
    r = simulate(lower(copy_graph(4096, 512), chip).programs, chip)
    moved = 2 * n  # read once, written once
    latency = chip.core.dma.latency
    assert r.time_s == pytest.approx(moved / 1e11 + latency, rel=0.02)
    assert r.bytes["hbm_read"] == n and r.bytes["hbm_write"] == n


def test_copies_below_the_threshold_or_without_an_engine_are_kernels():
    small = lower(copy_graph(64, 256), with_engine(1e11, 1 << 20))
    assert "dma.memcpy" not in mnemonics(small) and "v.cast" in mnemonics(small)
    assert "dma.memcpy" not in mnemonics(lower(copy_graph(64, 256), make_chip(cores=4)))


def test_a_copy_that_changes_the_type_is_a_mapping_error():
    with pytest.raises(MappingError, match="copy keeps shape and type"):
        lower(copy_graph(8, 8, DType.FP32), with_engine(1e11, 0))
