"""A small chip with round numbers, so expected times and energies are easy to hand-check."""

from __future__ import annotations

import dataclasses

import pytest

from hardware.chip import (
    ArrayConfig,
    ChipConfig,
    CoreConfig,
    Dataflow,
    DmaConfig,
    EnergyConfig,
    HbmConfig,
    MemoryConfig,
    PowerConfig,
    VectorConfig,
)
from isa.dtypes import DType


def make_chip(dataflow: Dataflow = Dataflow.WS, cores: int = 1, **overrides) -> ChipConfig:
    core = CoreConfig(
        array=ArrayConfig(16, 16, dataflow, {DType.BF16: 1, DType.INT8: 2, DType.FP8E4M3: 2,
                                             DType.FP4E2M1: 4}),
        vector=VectorConfig(lanes=16),
        sram=MemoryConfig(capacity=1 << 20, bytes_per_cycle=64),
        acc=MemoryConfig(capacity=1 << 18, bytes_per_cycle=64),
        dma=DmaConfig(latency=100e-9, max_bandwidth=0.0, burst_bytes=64),
    )
    energy = EnergyConfig(mac_pj={DType.BF16: 0.5, DType.INT8: 0.1, DType.FP8E4M3: 0.2,
                                  DType.FP4E2M1: 0.1},
                          vector_pj=0.2, sram_pj_per_byte=0.1, acc_pj_per_byte=0.1,
                          l2_pj_per_byte=0.5, hbm_pj_per_byte=5.0,
                          static_w=1.0)
    chip = ChipConfig(name="test", clock_hz=1e9, cores=cores, core=core,
                      hbm=HbmConfig(capacity=1 << 30, bandwidth=100e9, efficiency=1.0),
                      energy=energy, power=PowerConfig())
    return dataclasses.replace(chip, **overrides)


def assert_same_result(ref, got, rel: float = 1e-9, busy_rel: float = 1e-8,  # noqa: ANN001
                       busy_abs: float = 1e-15) -> None:
    """Two runs of the same programs gave the same figures: time, counts, bytes, energy,
    clock and every engine's instructions and busy time (to ``rel``)."""
    assert got.time_s == pytest.approx(ref.time_s, rel=rel)
    assert got.instructions == ref.instructions
    assert got.bytes == pytest.approx(ref.bytes, rel=rel)
    assert got.energy_j == pytest.approx(ref.energy_j, rel=rel)
    assert got.clock_hz == pytest.approx(ref.clock_hz, rel=rel)
    for e, stats in ref.engines.items():
        assert got.engines[e].instructions == stats.instructions
        assert got.engines[e].busy_s == pytest.approx(stats.busy_s, rel=busy_rel, abs=busy_abs)


@pytest.fixture
def chip() -> ChipConfig:
    return make_chip()
