"""Serving iterations priced from kernel costs: equal to simulating the whole iteration,
equal to a run's decode step, and served from memory once the kernels are known."""

from __future__ import annotations

import random

import pytest

from experiments import api, iteration
from experiments.iteration import Iteration, full, price
from experiments.run import run_model
from hardware.chips import load_chip
from mapper.model import load_model
from mapper.pipeline import MapOptions


def _random(rng: random.Random) -> Iteration:
    prefill = tuple((rng.choice([8, 16, 24]), rng.choice([0, 0, 16]))
                    for _ in range(rng.randint(0, 2)))
    decode = tuple(rng.randint(4, 60) for _ in range(rng.randint(0 if prefill else 1, 5)))
    return Iteration(prefill, decode)


@pytest.mark.parametrize("model,chip", [("tiny-llama", "h100"), ("tiny-gpt2", "edge"),
                                        ("tiny-mixtral", "edge")])
def test_composed_cost_is_within_2_percent_of_the_whole_iteration(model, chip):
    m, c = load_model(model), load_chip(chip)
    rng = random.Random(7)
    for _ in range(4):
        it = _random(rng)
        composed, whole = price(m, c, it).layer, full(m, c, it)
        assert composed.time_s == pytest.approx(whole.time_s, rel=0.02), it
        assert composed.energy_total_j == pytest.approx(whole.energy_total_j, rel=0.02), it


def test_a_decode_only_iteration_is_the_run_of_a_decode_step():
    m, c = load_model("tiny-llama"), load_chip("edge")
    step = run_model(m, c, "decode", 3, 8, 16, 1, MapOptions(layers_mapped=1))
    cost = api.price_iteration("tiny-llama", "edge", decode=[16, 16, 16])
    assert cost.time_s == pytest.approx(step.headline()["latency_s"], rel=1e-9)
    assert cost.energy_j == pytest.approx(step.headline()["energy_j"], rel=1e-9)


def test_known_kernels_are_looked_up_not_lowered(monkeypatch):
    m, c = load_model("tiny-llama"), load_chip("edge")
    it = Iteration(((8, 0),), (20, 33))
    first = price(m, c, it)
    monkeypatch.setattr(iteration, "lower", lambda *a, **k: pytest.fail("lowered again"))
    again = price(m, c, it)
    assert again.time_s == first.time_s and again.kernels == first.kernels


def test_bad_iterations_are_one_line_errors():
    with pytest.raises(api.ApiError, match="at least one"):
        api.price_iteration("tiny-llama", "edge")
    with pytest.raises(api.ApiError, match="tokens must be >= 1"):
        api.price_iteration("tiny-llama", "edge", prefill=[(0, 0)])


@pytest.mark.parametrize("model", ["tiny-llama", "tiny-gpt2"])
def test_a_new_mix_of_known_segments_is_summed_as_pricing_it_whole(model, monkeypatch):
    """Once its segments, its token count and its number of sequences have been met, an
    iteration is put together from their kernels without building its graph, and costs
    what pricing its graph whole costs (to rounding)."""
    m, c = load_model(model), load_chip("edge")
    price(m, c, Iteration(((16, 0),), (20, 30)))  # T = 18, 3 sequences
    price(m, c, Iteration((), (40, 20, 50)))  # segments 40, 20, 50 (one sequence each)
    mix = Iteration(((16, 0),), (40, 50))  # T = 18, 3 sequences, known segments
    builds = []
    orig = iteration.build_iteration
    monkeypatch.setattr(iteration, "build_iteration",
                        lambda *a, **k: builds.append(1) or orig(*a, **k))
    composed = price(m, c, mix)
    assert not builds  # no graph built
    monkeypatch.setattr(iteration, "_compose", lambda *a: None)
    iteration._ITERATIONS.clear()
    whole = price(m, c, mix)
    assert composed.time_s == pytest.approx(whole.time_s, rel=1e-12)
    assert composed.energy_j == pytest.approx(whole.energy_j, rel=1e-12)
    assert composed.kernels == pytest.approx(whole.kernels, rel=1e-12)
