"""Each fitted parameter of the GPU presets, pinned to the calibration rows it came from.

A change to the simulator that moves one of these predictions out of its band means the
parameter no longer describes what it was fitted on: refit it (benchmarks/fit_preset.py)
and update docs/validation.md, or find what broke.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from experiments.validate import load_target, predict_row, read_measured

MEASURED = Path(__file__).parents[1] / "data" / "measured"


def row(path: str, **match: object) -> tuple[str, pd.Series]:
    kind, df = read_measured(MEASURED / path)
    sel = df
    for col, value in match.items():
        sel = sel[sel[col] == value]
    assert len(sel) >= 1, f"no row {match} in {path}"
    return kind, sel.iloc[0]


def predicted(preset: str, path: str, **match: object) -> tuple[dict, float]:
    kind, r = row(path, **match)
    column = {"power": "mean_power_w", "layers": "ms_per_layer"}.get(kind, "ms")
    return predict_row(load_target(preset), kind, r), float(r[column])


def within(figures: dict, measured: float, tolerance: float) -> None:
    err = abs(figures["predicted"] - measured) / measured
    assert err <= tolerance, f"predicted {figures['predicted']:.4g}, measured {measured:.4g}"


def test_static_power_is_the_measured_idle_power():
    _, df = read_measured(MEASURED / "h100/power.csv")
    idle = df[df["op"] == "idle"]["mean_power_w"].mean()
    assert load_target("h100").chip.energy.static_w == pytest.approx(idle, abs=1.0)


def test_hbm_energy_per_byte_gives_the_copy_power():
    # hbm_pj_per_byte was fitted on the 2 GiB copy's board power at 1980 MHz
    figures, measured = predicted("h100", "h100/power.csv", op="copy")
    within(figures, measured, 0.05)
    assert figures["clock_mhz"] == pytest.approx(1980)


def test_mac_energy_and_dvfs_exponent_give_the_capped_gemm_clock():
    # mac_pj (bf16) and dvfs_exponent: the 8192^3 GEMM holds 700 W at ~1360 MHz
    figures, measured = predicted("h100", "h100/power.csv", op="gemm")
    within(figures, measured, 0.05)
    assert figures["clock_mhz"] == pytest.approx(1360, rel=0.05)


def test_limiter_response_lets_a_short_gemm_burst_run_above_the_capped_clock():
    # power.response_s: a 4096^3 GEMM measured in ~10 ms bursts runs between the clocks
    figures, measured = predicted("h100", "h100/gemm.csv", M=4096, K=4096, N=4096)
    within(figures, measured, 0.10)
    assert 1400 < figures["clock_mhz"] < 1980


def test_l2_bandwidth_and_hbm_efficiency_give_the_large_gemm_and_copy():
    figures, measured = predicted("h100", "h100/gemm.csv", M=2048, K=4096, N=4096)
    within(figures, measured, 0.10)
    figures, measured = predicted("h100", "h100/memory.csv", op="add_scalar", bytes=268435456)
    within(figures, measured, 0.05)


def test_kernel_gap_and_dma_latencies_give_the_small_kernels():
    figures, measured = predicted("h100", "h100/memory.csv", op="copy", bytes=1048576)
    within(figures, measured, 0.15)
    figures, measured = predicted("h100", "h100/vector.csv", op="gelu", T=8, H=768)
    within(figures, measured, 0.15)


def test_gemm_startup_gives_the_decode_gemm():
    figures, measured = predicted("h100", "h100/gemm.csv", M=1, K=8192, N=8192)
    within(figures, measured, 0.10)


@pytest.mark.parametrize("op, rows, cols", [("layernorm", 8192, 768), ("softmax", 32768, 4096)])
def test_vector_class_costs_give_the_large_row_ops(op, rows, cols):
    # a LayerNorm row of 4096 is streamed (mapper/kernels/rowstream.py), not priced by the
    # norm class: the class is pinned on rows the registers hold
    figures, measured = predicted("h100", "h100/vector.csv", op=op, T=rows, H=cols)
    within(figures, measured, 0.10)


def test_effective_int8_rate_gives_the_int8_gemm():
    figures, measured = predicted("h100", "h100/gemm_lowp.csv", dtype="int8", M=4096)
    within(figures, measured, 0.10)


@pytest.mark.parametrize("op, nbytes", [("all_reduce", 65536), ("all_gather", 16777216),
                                        ("all_reduce", 4294967296)])
def test_nvlink_protocols_give_small_middle_and_large_collectives(op, nbytes):
    # LL, LL128 and Simple: each size range picks the protocol it was fitted on
    figures, measured = predicted("h200x2", "h200x4/collectives_w2.csv", op=op, bytes=nbytes)
    within(figures, measured, 0.10)
