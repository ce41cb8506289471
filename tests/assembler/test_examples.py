"""The example programs assemble, and the tiled GEMM computes numpy's product."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from assembler import assemble_file
from hardware.chips import load_chip
from isa import DataSegment, DType, Program, Space
from isa import numerics as nx
from simulator.run import simulate

EXAMPLES = Path(__file__).parents[2] / "examples"


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.s")), ids=lambda p: p.name)
def test_example_assembles(path):
    assert len(assemble_file(path).instructions) > 0


def test_tiled_gemm_example_matches_numpy():
    prog = assemble_file(EXAMPLES / "gemm_tiled.s")
    c = prog.constants
    m, k, n = c["M"], c["K"], c["N"]
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((m, k)), rng.standard_normal((k, n))
    data = (DataSegment(Space.HBM, c["A"], nx.to_bytes(a, DType.BF16).tobytes()),
            DataSegment(Space.HBM, c["B"], nx.to_bytes(b, DType.BF16).tobytes()))
    r = simulate(Program(prog.instructions, data), load_chip("edge"), functional=True)
    assert r.races == ()
    out = nx.from_bytes(r.read(Space.HBM, c["C"], 4 * m * n), DType.FP32, m * n).reshape(m, n)
    ref = nx.round_to(a, DType.BF16) @ nx.round_to(b, DType.BF16)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-3)
