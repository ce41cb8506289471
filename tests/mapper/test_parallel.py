"""A model split over chips computes what it computes on one chip."""

from __future__ import annotations

import numpy as np
import pytest

from hardware.system import LinkConfig, SystemConfig
from hardware.topology import Topology
from isa import DType, Space
from isa import numerics as nx
from mapper.layers import Phase
from mapper.model import load_model
from mapper.parallel import Parallel, map_system
from mapper.pipeline import MapOptions
from simulator.run import simulate_system
from tests.mapper.helpers import bf16_ulp
from tests.simulator.conftest import make_chip

PHASE = Phase("prefill", batch=2, seq=8)
OPTS = MapOptions(functional=True, layers_mapped=None, seed=3)


def run(model, par: Parallel, opts: MapOptions = OPTS):
    chips = par.chips
    system = SystemConfig("t", (make_chip(cores=2),) * chips, Topology("full", (chips,)),
                          LinkConfig(100e9, 1e-6))
    m = map_system(model, list(system.chips), PHASE, par, opts)
    r = simulate_system(system, m.programs, groups=m.groups, functional=True)
    return m, r


def output(m, r, chip: int, model) -> np.ndarray:
    name = f"x{model.layers}"
    n = PHASE.tokens * model.hidden
    raw = r.read(Space.HBM, m.addresses[chip][name], 2 * n, chip=chip)
    return nx.from_bytes(raw, DType.BF16, n).reshape(PHASE.tokens, model.hidden)


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2"])
@pytest.mark.parametrize("tp, pp", [(2, 1), (4, 1), (1, 2), (2, 2)])
def test_split_model_matches_one_chip(name, tp, pp):
    model = load_model(name)
    one, r1 = run(model, Parallel())
    ref = output(one, r1, 0, model)
    par = Parallel(tp=tp, pp=pp)
    m, r = run(model, par)
    assert r.races == ()
    last = (pp - 1) * tp  # the last stage's chips hold the output
    for chip in range(last, last + tp):
        got = output(m, r, chip, model)
        # summing row-parallel partials in another order: a few bf16 ulps
        assert np.abs(got - ref).max() <= 4 * bf16_ulp(np.abs(ref).max())


@pytest.mark.parametrize("tp", [2, 4])
def test_unfused_split_model_matches_one_chip(tp):
    """Without fusion every tensor rank adds the row-parallel residual after the all-reduce,
    so all ranks run the same kernels (no deadlock) and the sum holds the residual once."""
    model = load_model("tiny-llama")
    unfused = MapOptions(functional=True, layers_mapped=None, seed=3, fusion=False)
    one, r1 = run(model, Parallel(), unfused)
    ref = output(one, r1, 0, model)
    m, r = run(model, Parallel(tp=tp), unfused)
    assert r.races == ()
    for chip in range(tp):
        got = output(m, r, chip, model)
        assert np.abs(got - ref).max() <= 4 * bf16_ulp(np.abs(ref).max())


def test_micro_batches_fill_the_pipeline():
    """Uniform stages and cheap transfers: m micro-batches through p stages take about
    (m + p - 1) stage times; one batch takes p of them (at a larger batch each)."""
    model = load_model("tiny-llama")
    chips = 2
    system = SystemConfig("t", (make_chip(cores=2),) * chips, Topology("full", (chips,)),
                          LinkConfig(1e12, 1e-9))
    phase = Phase("prefill", batch=4, seq=16)

    def time_of(micro):
        m = map_system(model, list(system.chips), phase, Parallel(pp=2, micro=micro),
                       MapOptions(layers_mapped=None))
        return simulate_system(system, m.programs, groups=m.groups).time_s

    def stage_time(batch):  # one stage (1 layer) of one micro-batch, alone
        m = map_system(model, [make_chip(cores=2)], Phase("prefill", batch=batch, seq=16),
                       Parallel(), MapOptions(layers_mapped=1))
        return simulate_system(SystemConfig("one", (make_chip(cores=2),), Topology(
            "full", (1,)), LinkConfig(1e12, 1e-9)), m.programs, groups=m.groups).time_s

    t4 = time_of(4)
    assert t4 == pytest.approx((4 + 2 - 1) * stage_time(1), rel=0.05)
    assert time_of(1) == pytest.approx(2 * stage_time(4), rel=0.05)


def test_expert_parallel_moe_dispatch_and_combine_by_all_to_all():
    """4 replicas x 4 experts, 2 per token: each chip sends and receives T*k token rows per
    MoE layer twice (dispatch, combine), (ep-1)/ep of them across links."""
    model = load_model("tiny-mixtral")
    ep = 4
    system = SystemConfig("t", (make_chip(cores=2),) * ep, Topology("full", (ep,)),
                          LinkConfig(100e9, 1e-6))
    phase = Phase("prefill", batch=4 * ep, seq=8)
    m = map_system(model, list(system.chips), phase, Parallel(dp=ep, ep=ep),
                   MapOptions(layers_mapped=None))
    r = simulate_system(system, m.programs, groups=m.groups)
    tokens = phase.tokens // ep
    rows_out = tokens * model.experts_per_token * (ep - 1) / ep  # leave each chip
    per_layer = 2 * ep * rows_out * model.hidden * 2  # dispatch + combine, all chips, bytes
    assert r.bytes["link_bytes"] == pytest.approx(model.layers * per_layer)
    assert r.engines["net"].instructions >= 2 * model.layers * ep


def test_moe_refuses_functional_mode_and_bad_degrees():
    model = load_model("tiny-mixtral")
    with pytest.raises(ValueError, match="performance mode only"):
        map_system(model, [make_chip()], PHASE, Parallel(), OPTS)
    with pytest.raises(ValueError, match="--ep equal to --dp"):
        map_system(model, [make_chip()] * 2, Phase("prefill", 2, seq=8), Parallel(tp=2, ep=2),
                   MapOptions())
