"""A simple, documented area and cost model of a chip, at a 7 nm-class node.

Area = compute + SRAM + memory PHYs + links, times an overhead for wiring, control and I/O;
cost = die cost at that area and yield + memory cost. The constants are round public
figures, stated here so a result can be traced and argued with; a sweep reports performance
per mm^2 and per dollar with them, as LLMCompass does.
"""

from __future__ import annotations

import math

from hardware.chip import ChipConfig
from isa.dtypes import DType

NODE = "7 nm"
MM2_PER_MAC = {  # one MAC unit incl. pipeline registers
    DType.FP32: 0.0040, DType.BF16: 0.0012, DType.FP16: 0.0012, DType.FP8E4M3: 0.0006,
    DType.FP8E5M2: 0.0006, DType.INT8: 0.0004, DType.INT4: 0.0002,
    DType.FP4E2M1: 0.0003}
MM2_PER_MIB_SRAM = 0.9  # high-density 6T SRAM with periphery
MM2_PER_VECTOR_LANE = 0.01
MM2_PER_HBM_PHY = 11.0  # one HBM2e/3 stack interface
HBM_STACK_BYTES_PER_S = 819e9  # one HBM3 stack; a chip needs bandwidth / this stacks
MM2_PER_DDR_PHY = 4.0  # one LPDDR/DDR/GDDR channel interface (per 25.6 GB/s)
OVERHEAD = 1.3  # wiring, control, NoC, I/O
WAFER_USD, WAFER_MM2 = 10_000.0, 70_000.0  # 300 mm wafer, usable area
DEFECTS_PER_MM2 = 0.001  # D0 = 0.1 / cm^2 (Poisson yield)
HBM_USD_PER_GB, DRAM_USD_PER_GB = 8.0, 3.0


def area_mm2(chip: ChipConfig) -> float:
    a = chip.core.array
    widest = max(a.macs_per_pe, key=lambda d: d.bits)
    macs = a.rows * a.cols * chip.cores * MM2_PER_MAC.get(widest, MM2_PER_MAC[DType.BF16])
    sram = (chip.core.sram.capacity + chip.core.acc.capacity) * chip.cores / 2 ** 20 + \
        chip.l2.capacity / 2 ** 20
    vector = chip.core.vector.lanes * chip.cores * MM2_PER_VECTOR_LANE
    if chip.hbm.kind.upper().startswith("HBM"):
        phys = math.ceil(chip.hbm.bandwidth / HBM_STACK_BYTES_PER_S) * MM2_PER_HBM_PHY
    else:
        phys = math.ceil(chip.hbm.bandwidth / 25.6e9) * MM2_PER_DDR_PHY
    return OVERHEAD * (macs + sram * MM2_PER_MIB_SRAM + vector + phys)


def cost_usd(chip: ChipConfig) -> float:
    """Die cost (wafer share / Poisson yield) + memory."""
    area = area_mm2(chip)
    die = WAFER_USD * area / WAFER_MM2 / math.exp(-DEFECTS_PER_MM2 * area)
    per_gb = HBM_USD_PER_GB if chip.hbm.kind.upper().startswith("HBM") else DRAM_USD_PER_GB
    return die + per_gb * chip.hbm.capacity / 1e9
