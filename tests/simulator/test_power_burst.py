"""The power limiter's burst clock, and energies on rails of their own under DVFS.

Chip: conftest.py's (1 GHz, 16x16 WS array, 1 W static, 0.5 pJ per bf16 MAC, 5 pJ per HBM
byte).
"""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hardware.chip import PowerConfig
from isa import DType, MemRef, Program, Space, build
from simulator.energy import OWN_RAIL
from simulator.run import burst_clock, simulate

S, H, A = Space.SRAM, Space.HBM, Space.ACC
F0, FCAP = 1e9, 0.6e9


def mm():
    return build("mm", MemRef(A, 0), MemRef(S, 0), MemRef(S, 0x4000), 64, 64, 64, "bf16",
                 "bf16", 0)


def compute_bound() -> Program:
    return Program((build("loop", 50, 2), mm(), build("halt")))


def test_a_burst_as_long_as_the_response_by_hand():
    # D = tau: f = f_cap + (f0 - f_cap) * (1 - e^-1) = 0.6 + 0.4 * 0.63212 GHz
    assert burst_clock(F0, FCAP, 1e-3, 1e-3) == pytest.approx(FCAP + 0.4e9 * (1 - math.exp(-1)))
    # D = 2 tau: (1 - e^-2) / 2
    assert burst_clock(F0, FCAP, 2e-3, 1e-3) == pytest.approx(
        FCAP + 0.4e9 * (1 - math.exp(-2)) / 2)


def test_short_bursts_run_at_nominal_and_long_loads_at_the_capped_clock():
    assert burst_clock(F0, FCAP, 1e-15, 1e-3) == pytest.approx(F0, rel=1e-9)
    assert burst_clock(F0, FCAP, 1e6, 1e-3) == pytest.approx(FCAP, rel=1e-6)


@settings(max_examples=100, deadline=None)
@given(st.floats(1e-9, 1e3), st.floats(1e-9, 1e3), st.floats(1e-6, 1.0),
       st.floats(0.01, 1.0))
def test_burst_clock_falls_with_the_load_length_between_the_two_clocks(d1, d2, tau, share):
    capped = F0 * share
    short, long = sorted((d1, d2))
    f_short, f_long = burst_clock(F0, capped, short, tau), burst_clock(F0, capped, long, tau)
    assert capped * (1 - 1e-12) <= f_long <= f_short <= F0 * (1 + 1e-12)


def test_a_burst_runs_faster_than_steady_state_and_slower_than_uncapped(chip):
    free = simulate(compute_bound(), chip)
    dyn = free.avg_power_w - 1.0
    cap = PowerConfig(tdp_w=1.0 + dyn / 2, dvfs_exponent=2.0)
    steady = simulate(compute_bound(), dataclasses.replace(chip, power=cap))
    tau = 1e-6
    burst = simulate(compute_bound(), dataclasses.replace(chip, power=dataclasses.replace(
        cap, response_s=tau, sustained_s=tau)))
    # steady state: f0 / sqrt(2) (test_engine); the burst runs at the mean clock of a load
    # as long as the limiter's time constant, from the steady clock the fixed point found
    assert steady.clock_hz == pytest.approx(F0 / 2 ** 0.5, rel=1e-3)
    assert burst.clock_hz == pytest.approx(burst_clock(F0, steady.clock_hz, tau, tau))
    assert burst.power_capped
    assert free.time_s < burst.time_s < steady.time_s
    # compute-bound: time scales as 1 / f
    assert burst.time_s == pytest.approx(free.time_s * F0 / burst.clock_hz, rel=1e-9)


@pytest.mark.parametrize("response,sustained", [(0.0, 1e-6), (1e-6, 0.0)])
def test_either_limiter_time_at_zero_keeps_the_steady_state(chip, response, sustained):
    free = simulate(compute_bound(), chip)
    cap = PowerConfig(tdp_w=1.0 + (free.avg_power_w - 1.0) / 2)
    steady = simulate(compute_bound(), dataclasses.replace(chip, power=cap))
    r = simulate(compute_bound(), dataclasses.replace(chip, power=dataclasses.replace(
        cap, response_s=response, sustained_s=sustained)))
    assert r.clock_hz == steady.clock_hz


def test_an_uncapped_chip_ignores_the_limiter_times(chip):
    quick = dataclasses.replace(chip, power=PowerConfig(response_s=1e-6, sustained_s=1e-6))
    assert simulate(compute_bound(), quick).clock_hz == F0


def test_hbm_energy_is_off_the_dvfs_rail(chip):
    loads = [build("dma.load", MemRef(S, 0), MemRef(H, 0), DType.BF16, 64, 64),
             build("sem.signal", "dma", 0), build("sem.wait", "mx", 0)]
    program = Program((*loads, build("loop", 50, 5), mm(), build("halt")))
    free = simulate(program, chip)
    capped = simulate(program, dataclasses.replace(chip, power=PowerConfig(
        tdp_w=1.0 + (free.avg_power_w - 1.0) / 2)))
    ratio = capped.clock_hz / F0
    assert ratio < 0.9
    assert "hbm" in OWN_RAIL and "link" in OWN_RAIL
    # the same 8 KiB of HBM reads cost the same 5 pJ/B at any core clock
    assert capped.energy_j["hbm"] == pytest.approx(free.energy_j["hbm"]) == pytest.approx(
        8192 * 5e-12)
    # the cores' energy per event scales with V^2 ~ f^(x - 1) = f for x = 2
    assert capped.energy_j["compute"] == pytest.approx(free.energy_j["compute"] * ratio)
    assert capped.energy_j["sram"] == pytest.approx(free.energy_j["sram"] * ratio)


def test_a_held_clock_runs_there_with_its_voltage(chip):
    """power.held_clock_hz: the limiter settled over a whole workload. The kernel runs at
    that clock (as fast as a chip built for it) and its core energy per event scales with
    the voltage of that clock (f^(x-1)), unlike a chip whose nominal clock is that low."""
    free = simulate(compute_bound(), chip)
    held = simulate(compute_bound(), dataclasses.replace(chip, power=PowerConfig(
        tdp_w=1.0, dvfs_exponent=2.0, held_clock_hz=FCAP)))
    slow = simulate(compute_bound(), dataclasses.replace(chip, clock_hz=FCAP))
    assert held.clock_hz == FCAP and held.power_capped
    assert held.time_s == pytest.approx(slow.time_s, rel=1e-12)
    assert held.energy_j["compute"] == pytest.approx(free.energy_j["compute"] * FCAP / F0)
    assert slow.energy_j["compute"] == pytest.approx(free.energy_j["compute"])


def test_a_held_clock_above_the_nominal_one_is_a_config_error():
    from hardware.chips import ConfigError, chip_from_dict, chip_to_dict, load_chip

    data = chip_to_dict(load_chip("h100"))
    data["power"]["held_clock_hz"] = 3e9
    with pytest.raises(ConfigError, match="power.held_clock_hz: above clock_hz"):
        chip_from_dict(data, "x.yaml")
