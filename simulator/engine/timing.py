"""Per-instruction costs: how long each instruction takes and what events it causes.

Each formula is small and documented here; the engine only sums them. Durations are in ns.
An instruction's *counts* (MACs, bytes per memory level, element-ops) are what the energy
model multiplies by energy per event, so time and energy come from the same accounting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hardware.chip import ChipConfig
from isa.dtypes import DType
from isa.footprint import mm_weight_bytes
from isa.operands import Flags, Space
from isa.program import Instruction
from isa.table import TABLE, VECTOR_CLASSES
from simulator.engine.systolic import fold_overhead, matmul_cycles, pipelined_cycles
from simulator.errors import SimError

# Order of the count vector every instruction contributes to the totals.
COUNTS = ("macs", "flops", "vector_ops", "hbm_read", "hbm_write", "sram_read", "sram_write",
          "acc_read", "acc_write", "link_bytes", "mac_pj", "l2_read")

# Each vector instruction's op class, as its table row names it (``OpSpec.timing``).
VECTOR_CLASS = {s.mnemonic: s.timing for s in TABLE if s.timing in VECTOR_CLASSES}
# Passes over a row too wide for the vector registers: softmax (max, sum of exponentials,
# scale), norms (statistics, then scale).
PASSES = {"norm": 2}
# Vector instructions that may run each row on one lane group (their ``warp`` flag).
WARP_OPS = frozenset(s.mnemonic for s in TABLE for op in s.operands
                     if isinstance(op.kind, Flags) and "warp" in op.kind.names)
# Floating-point operations per element, for achieved FLOP/s.
VECTOR_FLOPS = {"simple": 1, "transcendental": 4, "reduce": 1, "quant": 2, "softmax": 5,
                "norm": 5, "welford": 4}


@dataclass(frozen=True)
class Cost:
    """What one execution of a static instruction costs."""

    ns: float  # fixed duration on its engine
    hbm_bytes: float = 0.0  # bytes moved through the chip's shared HBM bandwidth (DMA)
    tail_ns: float = 0.0  # latency after the bytes move, overlapped with later DMAs
    cap: float = 0.0  # bytes/s the transfer may move at most (0: the core's DMA rate)
    hbm_cap: float = 0.0  # bytes/s its HBM part may move at most (0: no limit of its own)
    counts: tuple[float, ...] = (0.0,) * len(COUNTS)


def _counts(**kw: float) -> tuple[float, ...]:
    return tuple(float(kw.get(name, 0.0)) for name in COUNTS)


def mm_cycles(m: int, k: int, n: int, kind: DType, sparse: bool, chip: ChipConfig,
              chained: bool = False) -> int:
    """Cycles of one ``mm`` on the core's array.

    Systolic fill/drain and folds (SCALE-Sim, or overlapped folds when the array pipelines
    them), with K shortened by the per-type MAC rate: a PE that completes ``r`` MACs per
    cycle holds ``r`` weights (WS/IS) or streams ``r`` K-elements (OS), so the array sees
    ``ceil(k / r)``; 2:4 sparse weights halve K again (zeros are skipped, as sparse tensor
    cores do). A ``chained`` mm (accumulating into the tile the previous mm wrote) on an
    array with pipelined folds streams on behind it: its fill and drain overlap its
    neighbours', so only the first mm of an accumulation chain pays them.
    """
    a = chip.core.array
    rate = a.macs_per_pe.get(kind)
    if not rate:
        raise SimError(f"mm: the {a.rows}x{a.cols} array has no {kind.asm_name} MACs "
                       f"(macs_per_pe lists {', '.join(d.asm_name for d in a.macs_per_pe)})")
    k_eff = math.ceil(k / (2 if sparse else 1) / rate)
    if a.pipelined_folds and chained:
        return pipelined_cycles(m, k_eff, n, a.rows, a.cols, a.dataflow) + 1 - fold_overhead(
            a.rows, a.cols, a.dataflow) + a.tile_overhead_cycles
    fn = pipelined_cycles if a.pipelined_folds else matmul_cycles
    return fn(m, k_eff, n, a.rows, a.cols, a.dataflow) + a.tile_overhead_cycles


def matmul_cost(ins: Instruction, chip: ChipConfig) -> Cost:
    """Time of ``mm_cycles``; counts MACs (halved by 2:4), SRAM operand reads, accumulator."""
    m, k, n = ins["m"], ins["k"], ins["n"]
    adt, wdt = DType(ins["adt"]), DType(ins["wdt"])
    kind = max(adt, wdt, key=lambda d: d.bits)
    sparse, accum = ins.flag("sp24"), ins.flag("accum")
    cycles = mm_cycles(m, k, n, kind, sparse, chip, chained=accum)
    macs = m * k * n // (2 if sparse else 1)
    w_bytes = mm_weight_bytes(ins)
    acc_bytes = m * n * 4
    return Cost(
        ns=cycles / chip.clock_hz * 1e9,
        counts=_counts(macs=macs, flops=2 * m * k * n, sram_read=adt.nbytes(m * k) + w_bytes,
                       acc_write=acc_bytes, acc_read=acc_bytes if accum else 0,
                       mac_pj=macs * chip.energy.mac_pj.get(kind, 0.0)),
    )


def vector_cycles(cls: str, rows: int, cols: int, chip: ChipConfig) -> float:
    """Busy cycles: ``pipeline + rows * row_cycles(class) + passes * ceil(elements /
    lanes) * cycles_per_element(class)``; passes > 1 only for a multi-pass class on rows
    wider than the registers hold (``VectorConfig.row_elems``). The class's latency
    (``latency_cycles``) is a tail: the result is ready that much later, while the
    engine goes on with independent work."""
    v = chip.core.vector
    passes = PASSES.get(cls, 1) if v.row_elems and cols > v.row_elems else 1
    return (v.pipeline_cycles + rows * v.row_cycles.get(cls, 0.0)
            + passes * math.ceil(rows * cols / v.lanes) * v.op_cycles.get(cls, 1.0))


def warp_cycles(cls: str, rows: int, cols: int, chip: ChipConfig) -> tuple[float, float]:
    """(busy, tail) cycles of a warp-per-row op: each row is one instruction stream of
    ``ceil(cols / group_lanes) * warp_op_cycles + warp_row_cycles`` on one lane group."""
    v = chip.core.vector
    return grouped_cycles(rows, cols, v.group_lanes,
                          v.warp_op_cycles.get(cls, v.op_cycles.get(cls, 1.0)),
                          v.warp_row_cycles.get(cls, 0.0), chip)


def grouped_cycles(rows: int, cols: int, row_lanes: int, op: float, per_row: float,
                   chip: ChipConfig) -> tuple[float, float]:
    """(busy, tail) cycles of rows each spread over ``row_lanes`` lanes: a warp per row
    (``group_lanes``) or a block with one warp on every lane group (``lanes``). Each warp
    runs ``w = ceil(cols / row_lanes) * op + per_row`` cycles of issue; the groups share the
    rows' warps, so the engine is busy ``w * rows * row_lanes / lanes``; a group issues every
    cycle only with ``issue_rows`` warps in flight, so with fewer the last result is ready
    ``w * issue_rows`` after the start (the rest is the tail, during which the engine goes
    on with independent work)."""
    v = chip.core.vector
    w = math.ceil(cols / row_lanes) * op + per_row
    share = w * rows * row_lanes / v.lanes
    return v.pipeline_cycles + share, max(0.0, w * v.issue_rows - share)


# A norm's per-row cost and result latency are its chain of dependent block reductions:
# LayerNorm's mean and variance (two), RMSNorm's mean of squares (one). The norm class's
# row_cycles and latency_cycles are a LayerNorm's (fitted there); an RMSNorm pays this share.
NORM_SHARE = {"v.rmsnorm": 0.5}


def vector_cost(ins: Instruction, chip: ChipConfig) -> Cost:
    """``vector_cycles`` of the instruction's op class (``warp_cycles`` for a warp-per-row
    op on a chip with lane groups); counts element-ops and bytes."""
    cls = ins.spec.timing
    rows, cols = ins["rows"], ins["cols"]
    elems = rows * cols
    v = chip.core.vector
    if ins.spec.mnemonic in WARP_OPS and v.group_lanes and ins.flag("warp"):
        cycles, tail = warp_cycles(cls, rows, cols, chip)
    elif cls == "welford" and v.group_lanes:  # a block per row, a warp on every group
        cycles, tail = grouped_cycles(rows, cols, v.lanes, v.op_cycles.get(cls, 1.0),
                                      v.row_cycles.get(cls, 0.0), chip)
    else:
        cycles = vector_cycles(cls, rows, cols, chip)
        tail = v.latency_cycles.get(cls, 0.0)
        share = NORM_SHARE.get(ins.spec.mnemonic)
        if share is not None:
            cycles -= rows * v.row_cycles.get(cls, 0.0) * (1.0 - share)
            tail *= share
    spec = ins.spec
    odt = DType(ins["odt"])
    reads = {Space.SRAM: 0, Space.ACC: 0}
    for op in spec.operands:
        if op.name in ("src", "a", "b"):
            dt = DType(ins["adt"] if op.name == "a" else ins["bdt"] if op.name == "b"
                       else ins["idt"])
            reads[Space(ins[f"{op.name}.space"])] += dt.nbytes(elems)
    out_elems = rows if cls == "reduce" else 2 * rows if cls == "welford" else elems
    written = odt.nbytes(out_elems)
    out_space = Space(ins["dst.space"])
    return Cost(
        ns=cycles / chip.clock_hz * 1e9,
        tail_ns=tail / chip.clock_hz * 1e9,
        counts=_counts(vector_ops=elems, flops=elems * VECTOR_FLOPS[cls],
                       sram_read=reads[Space.SRAM], acc_read=reads[Space.ACC],
                       sram_write=written if out_space == Space.SRAM else 0,
                       acc_write=written if out_space == Space.ACC else 0),
    )


def dma_bytes(ins: Instruction, chip: ChipConfig) -> tuple[int, float]:
    """(payload bytes, bytes charged on HBM): each contiguous run is rounded up to bursts."""
    dt = DType(ins["dtype"])
    rows, cols, depth = ins["rows"], ins["cols"], ins["depth"]
    payload = dt.nbytes(rows * cols * depth)
    stride = ins["stride"] or cols
    burst = chip.core.dma.burst_bytes
    if stride == cols and (depth == 1 or ins["stride2"] in (0, rows * cols)):
        runs, run_bytes = 1, payload  # one contiguous block
    else:
        runs, run_bytes = rows * depth, dt.nbytes(cols)
    return payload, runs * math.ceil(run_bytes / burst) * burst


def dma_cost(ins: Instruction, chip: ChipConfig) -> Cost:
    """DMA = charged bytes at the share of HBM bandwidth it gets, + latency.

    The engine is busy only while its bytes move; the latency is a pipeline tail that
    overlaps the next DMA (many requests in flight), and is waited for only where order
    demands it: a semaphore signal, a barrier, a store, the end of the program.
    """
    payload, charged = dma_bytes(ins, chip)
    load = ins.mnemonic == "dma.load"
    return Cost(
        ns=_unaligned_ns(ins, payload, chip),
        hbm_bytes=charged, hbm_cap=window_rate(1024 * ins["window"], chip),
        tail_ns=(chip.core.dma.latency if load or not chip.core.dma.store_latency
                 else chip.core.dma.store_latency) * 1e9,
        counts=_counts(hbm_read=charged if load else 0, hbm_write=0 if load else charged,
                       sram_write=payload if load else 0, sram_read=0 if load else payload),
    )


def window_rate(window: int, chip: ChipConfig) -> float:
    """Little's law: a kernel that keeps ``window`` bytes in flight on a core, each request
    waiting ``dma.latency`` for HBM, moves at most window / latency bytes/s from HBM (0: no
    window, no limit). A GPU library's GEMV keeps few bytes in flight per SM, so fewer SMs
    than the HBM needs cannot reach its bandwidth whatever the HBM's peak."""
    lat = chip.core.dma.latency
    return window / lat if window and lat > 0 else 0.0


def _unaligned_ns(ins: Instruction, payload: int, chip: ChipConfig) -> float:
    """Rows whose pitch is not a multiple of ``dma.align_bytes`` cannot be bulk-copied:
    the core moves them element by element at ``dma.unaligned_bandwidth`` (a GPU library
    without TMA for such a matrix), the engine busy for that long before the bytes count
    on HBM. The pitch is a field, not an address, so timing still never depends on one."""
    dma = chip.core.dma
    if not dma.align_bytes or not dma.unaligned_bandwidth or ins["rows"] * ins["depth"] < 2:
        return 0.0
    pitch = DType(ins["dtype"]).nbytes(ins["stride"] or ins["cols"])
    if pitch % dma.align_bytes == 0:
        return 0.0
    return payload / dma.unaligned_bandwidth * 1e9


def copy_cost(ins: Instruction, chip: ChipConfig) -> Cost:
    """An on-core copy streams through the SRAM port: bytes / (bytes per cycle), read + write."""
    dt = DType(ins["dtype"])
    nbytes = dt.nbytes(ins["rows"] * ins["cols"])
    cycles = 2 * math.ceil(nbytes / chip.core.sram.bytes_per_cycle)
    src_acc = ins["src.space"] == Space.ACC
    dst_acc = ins["dst.space"] == Space.ACC
    return Cost(
        ns=cycles / chip.clock_hz * 1e9,
        counts=_counts(sram_read=0 if src_acc else nbytes, acc_read=nbytes if src_acc else 0,
                       sram_write=0 if dst_acc else nbytes, acc_write=nbytes if dst_acc else 0),
    )


def memcpy_cost(ins: Instruction, chip: ChipConfig) -> Cost:
    """A copy within HBM on the chip's copy engine: every byte read and written through the
    shared HBM bandwidth at the engine's own rate (``copy_engine.bandwidth``, read + write;
    without an engine, the core's DMA rate), then the DMA latency."""
    n = DType(ins["dtype"]).nbytes(ins["rows"] * ins["cols"])
    return Cost(ns=0.0, hbm_bytes=2 * n, tail_ns=chip.core.dma.latency * 1e9,
                cap=chip.copy_engine.bandwidth or chip.core.dma.max_bandwidth or math.inf,
                counts=_counts(hbm_read=n, hbm_write=n))


def free_cost(ins: Instruction, chip: ChipConfig) -> Cost:  # noqa: ARG001
    """Control and synchronisation: no engine time of their own (their waits are the
    engine's), and network instructions, priced by the link model when they run."""
    return Cost(ns=0.0)


# How each timing class of the table (``isa.table.TIMING``) is priced.
COSTS = {"free": free_cost, "network": free_cost, "matrix": matmul_cost, "dma": dma_cost,
         "copy": copy_cost, "memcpy": memcpy_cost, **{cls: vector_cost for cls in VECTOR_CLASSES}}


def static_cost(ins: Instruction, chip: ChipConfig) -> Cost:
    """The cost of any instruction that is not a network transfer (those depend on the run)."""
    return COSTS[ins.spec.timing](ins, chip)
