"""Iterations priced from simulated kernels at grid points (experiments/serve/cost.py):
exact at the grid, close between (the interpolation bound a user relies on), and the KV
cache's size from its closed form."""

from __future__ import annotations

import pytest

from experiments.api import chip, model, system
from experiments.iteration import Iteration, price
from experiments.serve.cost import IterationModel, KVTransfer


@pytest.fixture(scope="module")
def tiny():  # noqa: ANN201
    m, c = model("tiny-llama", max_seq=8192), chip("edge")
    return m, c, IterationModel(m, c)


def test_exact_at_grid_points(tiny) -> None:  # noqa: ANN001
    m, c, im = tiny
    for pre, dec in (([(256, 0)], []), ([], [512] * 16)):
        exact = price(m, c, Iteration(tuple(pre), tuple(dec)))
        assert im.price(pre, dec).time_s == pytest.approx(exact.time_s, rel=1e-9)
        assert im.price(pre, dec).energy_j == pytest.approx(exact.energy_j, rel=1e-9)


@pytest.mark.parametrize("pre,dec", [([(300, 0)], []), ([(700, 0)], []),
                                     ([], [700] * 5), ([], [300] * 20),
                                     ([(100, 300)], [500] * 10), ([(450, 0)], [1500] * 40)])
def test_between_grid_points_within_ten_percent(tiny, pre, dec) -> None:  # noqa: ANN001
    """docs/serving.md states the bound; benchmarks/bench_serve.py prints it on llama3-8b."""
    m, c, im = tiny
    exact = price(m, c, Iteration(tuple(pre), tuple(dec))).time_s
    assert im.price(pre, dec).time_s == pytest.approx(exact, rel=0.10)


def test_kv_cache_size_from_its_closed_form(tiny) -> None:  # noqa: ANN001
    m, c, im = tiny
    assert im.kv_bytes_per_token() == 2 * m.layers * m.kv_heads * m.head_dim * 2
    l8 = IterationModel(model("llama3-8b"), chip("h200"))
    assert l8.kv_bytes_per_token() == 2 * 32 * 8 * 128 * 2  # 128 KiB per token
    free = 141e9 * 0.9 - l8.weight_bytes()
    assert l8.kv_capacity_tokens(2048) == pytest.approx(free / 131072, rel=0.02)


def test_kv_transfer_is_latency_plus_bytes_over_bandwidth() -> None:
    s = system("h200x4")
    t = KVTransfer(s)
    small, big = t(0, 1, 1 << 20), t(0, 1, 1 << 30)
    bw = ((1 << 30) - (1 << 20)) / (big.time_s - small.time_s)
    assert bw == pytest.approx(s.link.bandwidth, rel=0.05)
    assert big.energy_j > small.energy_j > 0


def test_validate_kind_iterations(tmp_path) -> None:  # noqa: ANN001
    """Rows of a continuous batch (the measured README's columns) are priced; a row the
    model cannot read is skipped with its line and reason."""
    from experiments.api import validate

    f = tmp_path / "iterations.csv"
    f.write_text("model,prefill_lens,decode_batch,decode_ctx,tokens,ms\n"
                 "tiny-llama,16+8,4,32,28,0.1\n"
                 "tiny-llama,-,8,40,8,0.05\n"
                 "tiny-llama,1x2,0,0,3,0.1\n")
    df, summary = validate("edge", f)
    assert summary["kind"] == "iterations" and summary["skipped"] == 1
    assert df["predicted"].iloc[:2].gt(0).all()
    assert df["skipped"].iloc[2].startswith("row 4: prefill_lens '1x2'")
    m, c = model("tiny-llama"), chip("edge")
    from experiments.measured_work import AS_EAGER

    exact = price(m, c, Iteration(((16, 0), (8, 0)), (32,) * 4, per_prompt=True), AS_EAGER)
    want = (exact.layer.time_s * m.layers + exact.head.time_s) * 1e3
    assert df["predicted"].iloc[0] == pytest.approx(want, rel=1e-9)


def test_per_prompt_iterations_rotate_and_attend_each_prompt_alone() -> None:
    """An engine that loops over its prompts (the measured one) runs RoPE, the KV append and
    attention once per prompt: alike prompts are not batched, and it costs more."""
    from mapper.layers import build_iteration

    it = Iteration(((16, 0), (16, 0)), (32,), per_prompt=True)
    assert [s.batch for s in it.segments()] == [1, 1, 1]
    g = build_iteration(model("tiny-llama"), it.segments(), 1, rope_each=True)
    ropes = [n.name for n in g.nodes if n.op.value == "rope"]
    assert ropes == ["l0.seg0.rope", "l0.seg1.rope", "l0.seg2.rope"]
    m, c = model("tiny-llama"), chip("edge")
    grouped = price(m, c, Iteration(((16, 0), (16, 0)), (32,)))
    assert price(m, c, it).time_s > grouped.time_s
