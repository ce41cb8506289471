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
