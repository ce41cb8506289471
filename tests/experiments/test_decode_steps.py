"""Every decode step of a generation, derived from the first step and the kernels that
change with the context, equals each step mapped and simulated whole."""

from __future__ import annotations

import pytest

from experiments import api
from experiments.admit import decode_points
from experiments.run import run_phase, run_system_phase
from hardware.system import LinkConfig, SystemConfig
from hardware.topology import Topology
from mapper.layers import Phase
from mapper.model import load_model
from mapper.parallel import Parallel
from mapper.pipeline import MapOptions
from tests.simulator.conftest import make_chip


def whole(model, chip, batch, ctx, opts, system=None, par=None):
    phase = Phase("decode", batch, ctx=ctx)
    if system is None:
        return run_phase(model, chip, phase, opts)
    return run_system_phase(model, system, phase, par, opts)


def check(rep, model, chip, batch, opts, system=None, par=None) -> None:
    contexts = [r.phase.ctx for r in rep.decode]
    assert contexts == decode_points(contexts[0], rep.decode_tokens, 0)  # every step
    assert not rep.decode_interpolated
    for r in rep.decode[1:]:
        ref = whole(model, chip, batch, r.phase.ctx, opts, system, par)
        assert r.latency_s == pytest.approx(ref.latency_s, rel=1e-9)
        assert r.energy_j == pytest.approx(ref.energy_j, rel=1e-9)
        assert r.totals() == pytest.approx(ref.totals(), rel=1e-9)


@pytest.fixture
def mappings(monkeypatch):
    """How many times a whole layer is mapped (prefill and first decode step: twice)."""
    import experiments.run as run
    import mapper.parallel as parallel

    seen = []
    for mod, name in ((run, "map_model"), (parallel, "map_system")):
        orig = getattr(mod, name)

        def counted(*a, orig=orig, **k):  # noqa: ANN002, ANN003, ANN202
            seen.append(1)
            return orig(*a, **k)
        monkeypatch.setattr(mod, name, counted)
    return seen


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2"])
def test_derived_steps_equal_whole_steps_on_a_chip(name, mappings):
    chip, model = make_chip(cores=4), load_model(name)
    opts = MapOptions(layers_mapped=1)
    rep = api.run(model, chip, phase="generate", batch=2, seq=50, tokens=5, options=opts,
                  decode_samples=0)
    assert len(mappings) == 2  # prefill, first decode step; the other steps derived
    check(rep, model, chip, 2, opts)


def test_derived_steps_equal_whole_steps_on_a_tensor_parallel_system(mappings, monkeypatch):
    monkeypatch.setenv("TESSERA_WORKERS", "2")  # steps and kernels in forked workers
    chip, model = make_chip(cores=2), load_model("tiny-llama")
    system = SystemConfig("t", (chip,) * 4, Topology("ring", (4,)), LinkConfig(100e9, 1e-6))
    par, opts = Parallel(tp=2, dp=2), MapOptions(layers_mapped=1)
    rep = api.run(model, system=system, phase="generate", batch=4, seq=30, tokens=4, tp=2,
                  dp=2, options=opts, decode_samples=0)
    assert len(mappings) == 2
    check(rep, model, chip, 4, opts, system, par)


def test_every_step_is_the_default():
    rep = api.run("tiny-llama", make_chip(cores=4), phase="generate", seq=16, tokens=6,
                  options=MapOptions(layers_mapped=1))
    assert len(rep.decode) == 6 and not rep.decode_interpolated
