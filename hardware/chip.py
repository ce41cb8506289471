"""The hardware description: frozen dataclasses a chip is made of, loaded from YAML.

Units are SI base units throughout (bytes, bytes/s, Hz, seconds, watts, joules per event
expressed in pJ where the name says so), so every formula reads without conversions. The
YAML loader (``hardware.chips``) accepts strings with units such as ``"3.35 TB/s"``.
The mapper reads these classes too; only the engine advances time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from hardware.loader import spec
from isa.dtypes import DType


class Dataflow(StrEnum):
    """Which operand stays in the PEs; str-valued, so ``"ws" == Dataflow.WS``."""

    WS = "ws"
    OS = "os"
    IS = "is"


@dataclass(frozen=True)
class ArrayConfig:
    """A systolic matrix engine: ``rows`` x ``cols`` PEs running one dataflow."""

    rows: int
    cols: int
    dataflow: Dataflow = Dataflow.WS
    # MACs each PE completes per cycle, by operand data type (e.g. int8 packs two per PE).
    macs_per_pe: dict[DType, float] = field(default_factory=lambda: {DType.BF16: 1})
    # Cycles to swap weights / drain between tiles beyond the fold model (0 = none).
    tile_overhead_cycles: int = field(default=0, metadata=spec(bounds="non_negative"))
    # Overlap each fold's fill with the previous fold's streaming (double-buffered weights
    # or outputs); False is SCALE-Sim's model, every fold filling and draining on its own.
    pipelined_folds: bool = False
    # s before a kernel's first matmul on a core can start (the engine's set-up: operand
    # descriptors, pipeline barriers); paid once per kernel, after each barrier.
    startup: float = field(default=0.0, metadata=spec("time", "non_negative"))
    # The narrowest GEMM output tile on the weight (N) side the mapper may choose (0: any).
    # A GPU library never tiles narrower than its MMA's wide side (Hopper's wgmma: 64, with
    # A and B swapped for a small M); it splits K to fill the cores instead.
    min_tile_n: int = field(default=0, metadata=spec(bounds="non_negative"))


@dataclass(frozen=True)
class VectorConfig:
    """A SIMD vector engine: ``lanes`` elements per cycle for a 1-cycle op."""

    lanes: int
    # Cycles per element per lane for each op class (isa.table.VECTOR_CLASSES; each vector
    # instruction's row names its class).
    op_cycles: dict[str, float] = field(default_factory=lambda: {
        "simple": 1.0, "transcendental": 4.0, "reduce": 1.0, "softmax": 6.0, "norm": 5.0,
        "quant": 2.0, "welford": 5.0})
    pipeline_cycles: int = field(default=8, metadata=spec(bounds="non_negative"))
    # Cycles per row for the row-wise classes (a reduction across lanes, then a broadcast),
    # and extra start-up latency per instruction by class (dependent reduction steps).
    row_cycles: dict[str, float] = field(default_factory=dict)
    latency_cycles: dict[str, float] = field(default_factory=dict)
    # Elements of one row the engine keeps in registers (0: any row). A wider row of a
    # multi-pass class (softmax: max, sum, scale; norm: statistics, scale) is streamed
    # through the engine once per pass (simulator.engine.timing.PASSES).
    row_elems: int = field(default=0, metadata=spec(bounds="non_negative"))
    # Lanes of one SIMD group (a GPU warp: 32; 0: a row may use every lane). An op flagged
    # ``warp`` (a GPU's warp-per-row kernel) puts each row on one group, priced by
    # ``warp_op_cycles`` per element per lane and ``warp_row_cycles`` per row. A group
    # issues every cycle only while it holds ``issue_rows`` rows (warps) or more: a lone
    # row waits on its own dependent-instruction latency, so a few rows are latency-bound.
    group_lanes: int = field(default=0, metadata=spec(bounds="non_negative"))
    issue_rows: float = field(default=1.0, metadata=spec(bounds="positive"))
    warp_op_cycles: dict[str, float] = field(default_factory=dict)
    warp_row_cycles: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class MemoryConfig:
    """An on-core memory (SRAM scratchpad or accumulator buffer)."""

    capacity: int = field(metadata=spec("bytes", help="bytes per core"))
    bytes_per_cycle: int = field(metadata=spec(
        "bytes", help="read+write port bandwidth of the core's engines, per cycle"))


@dataclass(frozen=True)
class DmaConfig:
    """A core's DMA engine: fixed issue latency, a rate cap, and a minimum efficient burst."""

    latency: float = field(default=500e-9, metadata=spec(
        "time", "non_negative", "from issue to first byte (HBM round trip included)"))
    # s until a store is done with its source (posted to the memory side); 0: ``latency``
    store_latency: float = field(default=0.0, metadata=spec("time", "non_negative"))
    max_bandwidth: float = field(default=0.0, metadata=spec(
        "bandwidth", "non_negative", "what one core's DMA can sustain (0: no cap below HBM's)"))
    burst_bytes: int = field(default=64, metadata=spec(
        "bytes", help="contiguous runs are charged in whole bursts"))
    align_bytes: int = field(default=0, metadata=spec(
        "bytes", "non_negative", "rows whose pitch is not a multiple of this cannot be "
        "bulk-copied (0: any pitch can)"))
    unaligned_bandwidth: float = field(default=0.0, metadata=spec(
        "bandwidth", "non_negative", "the rate one core moves such rows at, element by "
        "element (0: no penalty)"))
    gemm_window: int = field(default=0, metadata=spec(
        "bytes", "non_negative", "bytes a GEMM kernel keeps in flight from HBM on one core "
        "(0: no limit); its loads move at most gemm_window / latency (Little's law)"))


@dataclass(frozen=True)
class CoreConfig:
    array: ArrayConfig
    vector: VectorConfig
    sram: MemoryConfig
    acc: MemoryConfig
    dma: DmaConfig = field(default_factory=DmaConfig)


@dataclass(frozen=True)
class HbmConfig:
    """Off-chip memory shared by all cores of a chip."""

    capacity: int = field(metadata=spec("bytes"))
    bandwidth: float = field(metadata=spec("bandwidth", help="peak"))
    efficiency: float = field(default=0.85, metadata=spec(
        bounds="fraction", help="fraction of peak that streaming achieves"))
    kind: str = "HBM"


@dataclass(frozen=True)
class L2Config:
    """An optional on-chip buffer shared by the cores (GPU L2, TPU CMEM)."""

    capacity: int = field(default=0, metadata=spec("bytes", "non_negative"))
    bandwidth: float = field(default=0.0, metadata=spec("bandwidth", "non_negative"))


@dataclass(frozen=True)
class CopyEngineConfig:
    """A chip-level DMA engine that copies within HBM without the cores (a GPU's copy
    engines, which its driver may use for a large device-to-device ``cudaMemcpy``)."""

    bandwidth: float = field(default=0.0, metadata=spec(
        "bandwidth", "non_negative", "bytes read + written per second (0: no engine)"))
    min_bytes: int = field(default=0, metadata=spec(
        "bytes", "non_negative", "the smallest copy sent to it; smaller ones run as kernels"))


@dataclass(frozen=True)
class EnergyConfig:
    """Energy per event and static power; each preset names its sources in comments."""

    mac_pj: dict[DType, float]  # per multiply-accumulate, by operand type
    vector_pj: float  # per element-op on the vector engine
    sram_pj_per_byte: float
    acc_pj_per_byte: float
    l2_pj_per_byte: float
    hbm_pj_per_byte: float
    static_w: float = field(metadata=spec(
        "power", "non_negative", "leakage + always-on power of the whole chip"))


@dataclass(frozen=True)
class PowerConfig:
    """Power cap: the clock drops until static + dynamic power fits under ``tdp_w``."""

    tdp_w: float = field(default=0.0, metadata=spec("power", "non_negative", "0: no cap"))
    min_clock_hz: float = field(default=0.0, metadata=spec("frequency", "non_negative"))
    # Dynamic power scales as (f / f_max) ** exponent under DVFS (f * V^2 with V ~ f^k).
    dvfs_exponent: float = 2.0
    # Time constant of the power limiter pulling the clock down to the capped one (0: the
    # cap holds at once), and how long the load runs back to back (0: indefinitely, the
    # steady state). See simulator.run.burst_clock.
    response_s: float = field(default=0.0, metadata=spec("time", "non_negative"))
    sustained_s: float = field(default=0.0, metadata=spec("time", "non_negative"))
    # A clock the limiter holds for the whole workload (0: none, the cap is met per kernel):
    # a measurement of many kernels back to back saw one clock, pulled down by their mean
    # power. Dynamic energy still scales with it as above (voltage follows the clock).
    held_clock_hz: float = field(default=0.0, metadata=spec(
        "frequency", "non_negative", "0: the cap's clock, found per kernel"))


@dataclass(frozen=True)
class ChipConfig:
    name: str
    clock_hz: float = field(metadata=spec("frequency"))
    cores: int
    core: CoreConfig
    hbm: HbmConfig
    energy: EnergyConfig
    l2: L2Config = field(default_factory=L2Config)
    power: PowerConfig = field(default_factory=PowerConfig)
    copy_engine: CopyEngineConfig = field(default_factory=CopyEngineConfig)
    kernel_gap: float = field(default=0.0, metadata=spec(
        "time", "non_negative", "between dependent kernels (launch / sync gap; GPUs ~1-3 us)"))

    @property
    def peak_macs_per_s(self) -> dict[DType, float]:
        a = self.core.array
        return {dt: a.rows * a.cols * m * self.cores * self.clock_hz
                for dt, m in a.macs_per_pe.items()}

    @property
    def hbm_effective_bw(self) -> float:
        return self.hbm.bandwidth * self.hbm.efficiency
