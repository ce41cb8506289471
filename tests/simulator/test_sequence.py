"""Kernels simulated one at a time add up exactly to the whole program."""

from __future__ import annotations

import pytest

from mapper.layers import Phase
from mapper.model import model_from_dict
from mapper.pipeline import MapOptions, map_model
from simulator.result import sequence
from simulator.run import simulate
from tests.simulator.conftest import make_chip

TINY = model_from_dict(dict(name="t", arch="decoder", hidden=64, layers=2, heads=4, kv_heads=2,
                            head_dim=16, ffn=128, mlp="swiglu", norm="rmsnorm", position="rope",
                            vocab=128, max_seq=64, rope_theta=1e4, norm_eps=1e-5, bias=False))


@pytest.mark.parametrize("phase", [Phase("prefill", 2, seq=24), Phase("decode", 4, ctx=40)],
                         ids=["prefill", "decode"])
def test_kernel_by_kernel_equals_whole_program(phase):
    chip = make_chip(cores=4, kernel_gap=1e-6)
    low = map_model(TINY, chip, phase, MapOptions(layers_mapped=None)).lowered
    whole = simulate(low.programs, chip, dedupe=False)
    parts = sequence([simulate(p, chip) for p in low.kernel_programs])
    assert parts.time_s == pytest.approx(whole.time_s, rel=1e-9)
    assert parts.energy_total_j == pytest.approx(whole.energy_total_j, rel=1e-9)
    assert parts.instructions == whole.instructions
    assert parts.mac_utilization == pytest.approx(whole.mac_utilization, rel=1e-9)


def test_one_layer_times_the_layer_count_equals_every_layer_mapped():
    """The shortcut behind whole-model figures: layers are identical and separated by a
    sync, so mapping one and multiplying is exact (switched off by layers_mapped=None)."""
    from experiments.run import run_phase

    chip = make_chip(cores=4)
    phase = Phase("decode", 2, ctx=24)
    one = run_phase(TINY, chip, phase, MapOptions(layers_mapped=1))
    every = run_phase(TINY, chip, phase, MapOptions(layers_mapped=None))
    assert one.repeat == 2 and every.repeat == 1
    assert one.latency_s == pytest.approx(every.latency_s, rel=1e-9)
    assert one.energy_j == pytest.approx(every.energy_j, rel=1e-9)


def test_each_field_is_the_sum_of_the_kernels_in_order():
    """Times, counts, bytes and energies add kernel by kernel, in order (to the bit);
    utilizations and the clock are time-weighted."""
    chip = make_chip(cores=4)
    low = map_model(TINY, chip, Phase("prefill", 2, seq=24), MapOptions()).lowered
    rs = [simulate(p, chip) for p in low.kernel_programs]
    got = sequence(rs)

    def add(values):  # Python's own sum, kernel by kernel in order
        return sum(list(values))
    t = add(r.time_s for r in rs)
    assert got.time_s == t
    assert (got.cycles, got.instructions, got.macs, got.flops) == tuple(
        add(getattr(r, f) for r in rs) for f in ("cycles", "instructions", "macs", "flops"))
    assert got.bytes == {k: add(r.bytes[k] for r in rs) for k in rs[0].bytes}
    assert got.energy_j == {k: add(r.energy_j[k] for r in rs) for k in rs[0].energy_j}
    assert got.clock_hz == add(r.clock_hz * r.time_s for r in rs) / t
    for e, st in got.engines.items():
        assert st.busy_s == add(r.engines[e].busy_s for r in rs)
        assert st.utilization == add(r.engines[e].utilization * r.time_s for r in rs) / t
