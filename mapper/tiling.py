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

from hardware.chip import ChipConfig
from mapper.kernels.gemm import Gemm, Tiling, ceil_div, k_splits, sram_fits, stages
from simulator.engine.timing import mm_cycles

SIZES = (16, 32, 64, 128, 256, 512)
STAGES = (2, 3, 4)  # load pipeline depths tried


@dataclass(frozen=True)
class Scored:
    tiling: Tiling
    estimate_s: float


def estimate(g: Gemm, t: Tiling, chip: ChipConfig) -> float:
    """Seconds for the GEMM with tiling ``t`` (analytical); split-K (``k_splits``) as
    tiles x parts work items of K / parts steps, plus the parts' sum."""
    tiles = ceil_div(g.m, t.tm) * ceil_div(g.n, t.tn) * g.groups
    parts = k_splits(g, t, chip.cores)
    active = min(chip.cores, tiles * parts)
    waves = ceil_div(tiles * parts, chip.cores)
    ksteps = ceil_div(ceil_div(g.k, t.tk), parts)
    kind = max(g.adt, g.wdt, key=lambda d: d.bits)
    step_compute = mm_cycles(min(t.tm, g.m), min(t.tk, g.k), min(t.tn, g.n), kind, g.sparse,
                             chip, chained=ksteps > 1) / chip.clock_hz
    step_bytes = g.adt.nbytes(min(t.tm, g.m) * t.tk) + g.wdt.nbytes(t.tk * min(t.tn, g.n))
    bw = _load_bandwidth(g, t, tiles * parts * ksteps * step_bytes, chip) / active
    if chip.core.dma.max_bandwidth:
        bw = min(bw, chip.core.dma.max_bandwidth)
    transfer = step_bytes / bw
    latency = chip.core.dma.latency
    # n buffers: each is refilled (transfer + latency) and consumed in turn, n in flight
    step = max(step_compute, transfer, (transfer + latency + step_compute) / stages(g, t))
    fill = latency + transfer
    reduce = 0.0
    if parts > 1:  # every part's fp32 plane read, C written, after a kernel boundary
        moved = 4 * parts * g.m * g.n + g.cdt.nbytes(g.m * g.n)
        reduce = moved / chip.hbm_effective_bw + latency + chip.kernel_gap
    return waves * ksteps * step + fill + reduce


def _load_bandwidth(g: Gemm, t: Tiling, loaded: float, chip: ChipConfig) -> float:
    """Bytes/s the chip sustains for the GEMM's loads, by the L2 rule of ``simulator.memory.l2``:
    tiles of one wave share their A rows and W columns through the L2; a later wave re-reads
    them from HBM unless a wave's footprint fits the L2."""
    hbm = chip.hbm_effective_bw
    if chip.l2.capacity <= 0 or chip.l2.bandwidth <= 0 or loaded <= 0:
        return hbm
    rows, cols = ceil_div(g.m, t.tm) * g.groups, ceil_div(g.n, t.tn)
    per_wave = min(chip.cores, rows * cols)
    a_row, w_col = g.adt.nbytes(t.tm * g.k), g.wdt.nbytes(g.k * t.tn)
    wave = min(rows, per_wave) * a_row + min(cols, ceil_div(per_wave, rows)) * w_col
    waves = ceil_div(rows * cols, chip.cores)
    unique = (g.adt.nbytes(g.m * g.k) + g.wdt.nbytes(g.k * g.n)) * g.groups
    missed = unique if wave * 2 <= chip.l2.capacity else max(unique, waves * wave)
    hit = max(0.0, 1.0 - missed / loaded)
    return 1.0 / max((1.0 - hit) / hbm, hit / chip.l2.bandwidth)


def candidates(g: Gemm, chip: ChipConfig) -> list[Tiling]:
    a = chip.core.array
    sizes_m = [s for s in SIZES if s < g.m] + [min(g.m, max(SIZES))]
    sizes_n = [s for s in SIZES if s < g.n] + [min(g.n, max(SIZES))]
    least = min(a.min_tile_n, g.n)  # a library's narrowest tile on the weight side
    sizes_n = [s for s in sizes_n if s >= least]
    sizes_k = [s for s in SIZES if s <= max(g.k, 16) and s >= min(16, a.rows)]
    if g.decode == "group":
        sizes_k = [g.group]  # one scale group per K-step
    out = []
    for tm in sorted(set(sizes_m)):
        for tn in sorted(set(sizes_n)):
            for tk in sorted(set(sizes_k)) or [g.k]:
                for n in STAGES if not g.decode else (2,):
                    t = Tiling(tm, min(tk, g.k), tn, n)
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
                                                           s.tiling.tk), s.tiling.stages))
    return scored[:top]


__all__ = ["Scored", "Tiling", "candidates", "choose", "estimate", "replace"]
