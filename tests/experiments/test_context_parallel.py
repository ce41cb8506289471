"""Context parallelism: a long prefill's tokens split over chips, keys and values gathered."""

from __future__ import annotations

import pytest

from experiments import api
from mapper.layers import Phase
from mapper.model import model_from_dict
from mapper.ops import Op
from mapper.parallel import Parallel, groups_of, map_system

MODEL = model_from_dict(dict(name="cp", hidden=256, layers=2, heads=8, kv_heads=2, ffn=512,
                             vocab=256, max_seq=8192))


@pytest.fixture(scope="module")
def system():  # noqa: ANN201
    return api.system("h100x4", {"cores": 8})


def test_each_rank_prefills_its_chunk_over_the_prefix(system):
    par = Parallel(cp=4)
    m = map_system(MODEL, list(system.chips), Phase("prefill", 1, seq=2048), par)
    chunk = 512
    for rank in range(4):
        g = m.graphs[rank]
        cache = g.tensors["l0.k_cache"]
        assert cache.shape[2] == (rank + 1) * chunk  # its chunk after the earlier ones
        assert g.tensors["x0"].shape[0] == chunk
        gather = next(n for n in g.nodes if n.op == Op.ALLGATHER)
        assert gather.attrs.count == chunk * 2 * MODEL.kv_dim  # this chunk's K and V
        assert groups_of(par)[gather.attrs.group] == [0, 1, 2, 3]


def test_a_long_prompt_on_four_chips_is_faster_but_not_four_times(system):
    single = api.run(model=MODEL, chip=system.chips[0], phase="prefill", batch=1, seq=4096)
    split = api.run(model=MODEL, system=system, phase="prefill", batch=1, seq=4096, cp=4)
    ratio = single.prefill.latency_s / split.prefill.latency_s
    # the last chunk attends over the whole prompt (causal imbalance) and the keys and
    # values cross the links: less than 4x, but well over 2x
    assert 2.0 < ratio < 4.0


@pytest.mark.parametrize("kw, message", [
    (dict(phase="decode", ctx=128, cp=4), "splits a prefill"),
    (dict(phase="prefill", seq=1000, cp=3), "= 3 chips"),
])
def test_context_parallel_refusals(system, kw, message):
    with pytest.raises(api.ApiError, match=message):
        api.run(model=MODEL, system=system, batch=1, **kw)


def test_sequence_parallel_norms_run_on_a_share_of_the_tokens(system):
    """Megatron SP: each row-parallel all-reduce becomes a reduce-scatter to T / tp rows
    (the residual and the next norm run there) and an all-gather before the next
    column-parallel projection — the same bytes on the links as the all-reduce."""
    par = Parallel(tp=4, sp=True)
    m = map_system(MODEL, list(system.chips), Phase("prefill", 1, seq=256), par)
    g = m.graphs[0]
    ops = [n.op for n in g.nodes]
    assert Op.ALLREDUCE not in ops
    layers = sum(1 for n in g.nodes if n.op == Op.RENAME and n.name.endswith(".out"))
    assert ops.count(Op.REDUCESCATTER) == ops.count(Op.ALLGATHER) == 2 * layers
    assert g.tensors["l0.norm1.out"].shape == (64, MODEL.hidden)  # 256 tokens / 4
    plain = api.run(model=MODEL, system=system, phase="prefill", batch=1, seq=256, tp=4)
    sp = api.run(model=MODEL, system=system, phase="prefill", batch=1, seq=256, tp=4, sp=True)
    assert sp.prefill.layer.bytes["link_bytes"] == pytest.approx(
        plain.prefill.layer.bytes["link_bytes"],
                                                          rel=0.01)


@pytest.mark.parametrize("kw, message", [
    (dict(cp=0), "--cp must be at least 1, got 0"),
    (dict(tp=1, sp=True), "--sp: .* needs --tp 2 or more"),
])
def test_bad_split_degrees_are_one_line_errors(system, kw, message):
    with pytest.raises(api.ApiError, match=message):
        api.run(model=MODEL, system=system, phase="prefill", batch=1, seq=256, **kw)
