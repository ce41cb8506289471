"""Tile-shape search for GEMMs: candidates scored by a fast analytical estimate.

The estimate is the same physics as the simulator at coarse grain: waves of output tiles
over the cores; per k-step the largest of the array's compute, the core's share of HBM
bandwidth for its A and W tiles, and — with two buffers — half of one buffer's round trip
(transfer + DMA latency + compute); plus one pipeline fill. Only shapes whose
double buffers fit the SRAM and accumulator are considered. ``confirm`` re-ranks the best
few by simulating them (LLMCompass-style search, confirmed where it matters).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from mapper.kernels.gemm import Gemm, Tiling, ceil_div, sram_fits
from simulator.hardware import ChipConfig
from simulator.timing import mm_cycles

SIZES = (16, 32, 64, 128, 256, 512)


@dataclass(frozen=True)
class Scored:
    tiling: Tiling
    estimate_s: float


def estimate(g: Gemm, t: Tiling, chip: ChipConfig) -> float:
    """Seconds for the GEMM with tiling ``t`` (analytical)."""
    tiles = ceil_div(g.m, t.tm) * ceil_div(g.n, t.tn)
    active = min(chip.cores, tiles)
    waves = ceil_div(tiles, chip.cores)
    ksteps = ceil_div(g.k, t.tk)
    kind = max(g.adt, g.wdt, key=lambda d: d.bits)
    step_compute = mm_cycles(min(t.tm, g.m), min(t.tk, g.k), min(t.tn, g.n), kind, g.sparse,
                             chip) / chip.clock_hz
    step_bytes = g.adt.nbytes(min(t.tm, g.m) * t.tk) + g.wdt.nbytes(t.tk * min(t.tn, g.n))
    bw = chip.hbm_effective_bw / active
    if chip.core.dma.max_bandwidth:
        bw = min(bw, chip.core.dma.max_bandwidth)
    transfer = step_bytes / bw
    latency = chip.core.dma.latency
    # two buffers: a buffer is refilled (transfer + latency) while the other is consumed
    step = max(step_compute, transfer, (transfer + latency + step_compute) / 2)
    fill = latency + transfer
    return waves * ksteps * step + fill


def candidates(g: Gemm, chip: ChipConfig) -> list[Tiling]:
    a = chip.core.array
    sizes_m = [s for s in SIZES if s < g.m] + [min(g.m, max(SIZES))]
    sizes_n = [s for s in SIZES if s < g.n] + [min(g.n, max(SIZES))]
    sizes_k = [s for s in SIZES if s <= max(g.k, 16) and s >= min(16, a.rows)]
    if g.decode == "group":
        sizes_k = [g.group]  # one scale group per K-step
    out = []
    for tm in sorted(set(sizes_m)):
        for tn in sorted(set(sizes_n)):
            for tk in sorted(set(sizes_k)) or [g.k]:
                t = Tiling(tm, min(tk, g.k), tn)
                if g.sparse and (t.tk % 8 or g.k % 8):
                    continue
                if sram_fits(g, t, chip.core.sram.capacity, chip.core.acc.capacity):
                    out.append(t)
    return out


def choose(g: Gemm, chip: ChipConfig, top: int = 1) -> list[Scored]:
    """The ``top`` best tilings by estimate (ties go to the larger, fewer-instruction tile)."""
    scored = [Scored(t, estimate(g, t, chip)) for t in candidates(g, chip)]
    if not scored:
        raise ValueError(f"{g.name}: no tile shape fits the {chip.core.sram.capacity} B SRAM "
                         f"and {chip.core.acc.capacity} B accumulator")
    scored.sort(key=lambda s: (round(s.estimate_s, 12), -(s.tiling.tm * s.tiling.tn *
                                                           s.tiling.tk)))
    return scored[:top]


__all__ = ["Scored", "Tiling", "candidates", "choose", "estimate", "replace"]
