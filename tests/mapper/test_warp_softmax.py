"""A softmax as PyTorch runs it on a GPU: rows that fit the persistent kernel go one per lane
group (a warp), with a core's rows in flight together; wider rows keep the whole-core path."""

from __future__ import annotations

import dataclasses

import numpy as np

from isa import DType, Space
from isa import numerics as nx
from mapper import reference as ref
from mapper.lower import lower
from simulator.run import simulate
from tests.mapper.test_rowstream import expected, graph
from tests.simulator.conftest import make_chip


def gpu_like(cores: int = 2):
    """16 lanes in two groups of 8, a group needing 3 rows in flight to issue every cycle."""
    c = make_chip(cores=cores)
    v = dataclasses.replace(c.core.vector, group_lanes=8, issue_rows=3.0,
                            warp_op_cycles={"softmax": 6.0}, warp_row_cycles={"softmax": 10.0})
    return dataclasses.replace(c, core=dataclasses.replace(c.core, vector=v))


def softmaxes(programs) -> list:
    return [i for p in programs.values() for i in p.instructions
            if i.spec.mnemonic == "v.softmax"]


def test_narrow_rows_run_a_row_per_group_and_match_numpy():
    chip = gpu_like()
    rng = np.random.default_rng(0)
    x = ref.bf16(rng.standard_normal((13, 300)) * 3)
    low = lower(graph("softmax", 13, 300, stream=False), chip, weights={}, inputs={"x": x})
    ops = softmaxes(low.programs)
    assert ops and all(i.flag("warp") for i in ops)
    # 13 rows on 2 cores: tiles of at least 2 groups x 3 = 6 rows (a power of two: 8), so
    # each core's rows are in flight together; without that, tiles of 2 (4 per core)
    assert sorted(i["rows"] for i in ops) == [5, 8]
    r = simulate(low.programs, chip, functional=True)
    got = nx.from_bytes(r.read(Space.HBM, low.addresses["y"], 2 * 13 * 300), DType.BF16,
                        13 * 300).reshape(13, 300)
    want = expected("softmax", x, None)
    np.testing.assert_allclose(got, want, rtol=2e-2, atol=2e-2 * want.max())


def test_wide_rows_and_chips_without_groups_keep_the_core_path():
    assert not any(i.flag("warp") for i in softmaxes(
        lower(graph("softmax", 4, 4096, stream=False), gpu_like()).programs))
    assert not any(i.flag("warp") for i in softmaxes(
        lower(graph("softmax", 4, 256, stream=False), make_chip(cores=2)).programs))


def test_a_lone_narrow_row_pays_its_groups_latency():
    """One row of 1024 on its group is 128 elements per lane x 6 + 10 = 778 cycles of
    issue; a group that issues it every third cycle makes it 2 x 778 later than one that
    issues every cycle."""
    def run(issue_rows: float) -> float:
        c = gpu_like(1)
        c = dataclasses.replace(c, core=dataclasses.replace(c.core, vector=dataclasses.replace(
            c.core.vector, issue_rows=issue_rows)))
        return simulate(lower(graph("softmax", 1, 1024, stream=False), c).programs, c).cycles
    assert run(3.0) - run(1.0) == np.float64(2 * 778)
