"""MoE routing statistics against their closed forms, and the graph they shape."""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mapper.layers import Phase, Shard, build_layers
from mapper.model import load_model
from mapper.ops import Op
from mapper.routing import expert_loads, popularity, route


def test_uniform_routing_gives_every_expert_its_even_share():
    r = route(tokens=64, k=8, experts=256, ep=1)
    assert set(r.loads) == {2} and r.dropped == 0 and r.imbalance == 1.0


def test_zipf_loads_follow_the_law_to_a_slot():
    tokens, k, e, s = 1000, 8, 64, 0.6  # no expert wants more than one slot per token
    r = route(tokens, k, e, skew=s)
    h = sum(1 / (i + 1) ** s for i in range(e))
    exact = [tokens * k / (i + 1) ** s / h for i in range(e)]
    assert sum(r.loads) == tokens * k
    assert all(abs(x - y) < 1 for x, y in zip(r.loads, exact))
    assert r.imbalance == pytest.approx(max(r.loads) / (tokens * k / e))


def test_an_expert_takes_at_most_one_slot_per_token():
    r = route(tokens=4, k=2, experts=8, skew=3.0)  # the law wants most slots on expert 0
    assert max(r.loads) <= 4 and sum(r.loads) == 8


def test_capacity_factor_drops_the_excess_slots():
    tokens, k, e, c = 512, 2, 16, 1.25
    raw = route(tokens, k, e, skew=1.0).loads
    r = route(tokens, k, e, skew=1.0, capacity_factor=c)
    cap = math.ceil(c * tokens * k / e)
    assert r.capacity == cap
    assert max(r.loads) <= cap
    assert r.dropped == sum(max(0, x - cap) for x in raw)
    assert sum(r.loads) + r.dropped == tokens * k


def test_experts_spread_over_chips_as_evenly_as_they_divide():
    r = route(tokens=8, k=8, experts=256, ep=72)
    assert r.per_chip.count(4) == 40 and r.per_chip.count(3) == 32 and sum(r.per_chip) == 256
    assert list(r.chip_experts(1)) == [4, 5, 6, 7]


def test_the_popular_experts_chip_is_the_busiest():
    r = route(tokens=64, k=8, experts=256, ep=8, skew=1.0)
    assert r.busiest == 0
    assert r.chip_slots(0) > 8 * 64 * 8 / 8  # more than its even share of the group's slots


def test_measured_loads_replace_the_law():
    assert popularity(4, measured=(1, 1, 2, 0)) == [0.25, 0.25, 0.5, 0.0]
    with pytest.raises(ValueError, match="4 experts"):
        popularity(4, measured=(1, 2))


@settings(max_examples=60, deadline=None)
@given(tokens=st.integers(1, 300), k=st.integers(1, 8), e=st.integers(8, 64),
       skew=st.floats(0, 3))
def test_loads_always_sum_to_the_slots(tokens, k, e, skew):
    loads = expert_loads(tokens, k, popularity(e, skew))
    assert sum(loads) == tokens * k and max(loads) <= tokens and min(loads) >= 0


def test_the_graph_runs_the_busiest_chips_experts_on_their_loads():
    m = dataclasses.replace(load_model("tiny-mixtral"), expert_skew=1.0)
    g = build_layers(m, Phase("decode", 16), 1, shard=Shard(ep=2, ep_group=9))
    r = route(16, m.experts_per_token, m.experts, 2, skew=1.0)
    gemms = [n for n in g.nodes if n.op == Op.LINEAR and n.name.startswith("l0.experts.")]
    mine = tuple(r.loads[e] for e in r.chip_experts(r.busiest))
    assert [n.attrs.group_rows for n in gemms] == [mine, mine]  # one grouped GEMM each
    a2a = [n for n in g.nodes if n.op == Op.ALLTOALL]
    received = g.tensors[a2a[0].outputs[0]].shape[0]
    assert received == max(16 * m.experts_per_token, r.chip_slots(r.busiest))
    # every local expert's weights are held, used or not
    held = g.tensors["l0.experts.gate_up.w"].shape[0] // m.hidden
    assert held == r.per_chip[r.busiest]


def test_grouped_expert_gemm_computes_each_experts_product():
    """The grouped GEMM's programs, run functionally, give each row group its own W."""
    import numpy as np

    from hardware.chips import load_chip
    from isa import Program, Space, build
    from isa import numerics as nx
    from mapper.emit import resolve
    from mapper.kernels.gemm import Gemm, Tiling, gemm_programs
    from simulator.run import simulate

    chip = load_chip("h100")
    rows, k, n = (5, 0, 19), 64, 48
    m = sum(rows)
    rng = np.random.default_rng(0)
    a = nx.round_to(rng.standard_normal((m, k)), nx.DType.BF16)
    w = nx.round_to(rng.standard_normal((len(rows) * k, n)), nx.DType.BF16)
    A, W, C = 0, 1 << 16, 1 << 18
    g = Gemm(m=m, k=k, n=n, a=A, w=W, c=C, w_layout="row", groups=len(rows),
             w_stride=2 * k * n, group_rows=rows)
    progs = gemm_programs(g, Tiling(16, 32, 32), chip.cores)
    from isa.program import DataSegment
    data = (DataSegment(Space.HBM, A, nx.to_bytes(a, nx.DType.BF16).tobytes()),
            DataSegment(Space.HBM, W, nx.to_bytes(w, nx.DType.BF16).tobytes()))
    programs = {c: Program(tuple(resolve(p)) + (build("halt"),), data if c == 0 else ())
                for c, p in enumerate(progs)}
    r = simulate(programs, chip, functional=True)
    got = nx.from_bytes(np.frombuffer(r.read(Space.HBM, C, 2 * m * n), np.uint8),
                        nx.DType.BF16, m * n).reshape(m, n)
    want = np.concatenate([a[:5] @ w[:k], a[5:] @ w[2 * k:]])
    assert np.abs(got - want).max() <= 0.02 * np.abs(want).max()


def test_shared_experts_run_on_every_token():
    m = load_model("tiny-deepseek")
    g = build_layers(m, Phase("prefill", 2, seq=8), m.layers)
    shared = [n for n in g.nodes if n.name.endswith("shared.gate_up")]
    assert len(shared) == m.layers - m.dense_layers
    assert g.tensors[shared[0].outputs[0]].shape == (16, 2 * m.shared_experts * m.moe_ffn)
