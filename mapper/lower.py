"""Lower a graph to one program per core: HBM layout, a kernel per node, syncs between them.

Nodes run one after another; between two nodes every core drains its engines (``barrier``),
meets all other cores (``net.barrier``: a kernel boundary, charged the chip's kernel gap)
and drains again, so each kernel starts from a clean, balanced state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from hardware.chip import ChipConfig
from isa import DataSegment, DType, Program, Space, build
from isa.errors import TesseraError
from mapper.emit import Item, hbm, resolve, sram
from mapper.graph import Graph, Kind, Node
from mapper.kernels.attention import Attention, attention_programs, regions
from mapper.kernels.gemm import Gemm, Tiling, gemm_programs
from mapper.kernels.rowwise import (
    Param,
    RowKernel,
    View,
    absmax_scale_op,
    act_op,
    add_op,
    column_block,
    concat_programs,
    norm_op,
    quant_rows_op,
    rms_scale_op,
    rope_op,
    row_programs,
    silu_mul_op,
    sram_bytes,
    sum_op,
)
from mapper.layout import blocked_size, choose_layout
from mapper.tiling import choose

ALIGN = 256
def sync(group: int = 0) -> tuple:
    """A kernel boundary: the core drains, meets the chip's other cores (``group``: this
    chip's own group on a multi-chip system; 0 on one chip), and drains again."""
    return (build("barrier"), build("net.barrier", group), build("barrier"))


SYNC = sync(0)


class MappingError(TesseraError, ValueError):
    """The graph cannot be mapped onto this chip (e.g. a tile that fits nowhere)."""


@dataclass
class Lowered:
    """The per-core programs and everything needed to read their results."""

    programs: dict[int, Program]  # the whole graph, kernels separated by chip-wide syncs
    addresses: dict[str, int]
    tilings: dict[str, Tiling]
    kernels: list[tuple[str, str]] = field(default_factory=list)  # (node, kind)
    # each kernel alone (ending with its sync): their times add up to the whole program's
    kernel_programs: list[dict[int, Program]] = field(default_factory=list)
    layouts: dict[str, str] = field(default_factory=dict)  # linear node -> weight layout


@dataclass
class _Ctx:
    graph: Graph
    chip: ChipConfig
    addr: dict[str, int]
    tilings: dict[str, Tiling]
    weights: dict[str, np.ndarray] | None
    segments: list[DataSegment]


Confirm = Callable[[dict[int, Program]], float]  # programs -> simulated seconds


def lower(graph: Graph, chip: ChipConfig, weights: dict[str, np.ndarray] | None = None,
          inputs: dict[str, np.ndarray] | None = None, confirm: Confirm | None = None,
          top: int = 3, layout: str = "auto", barrier_group: int = 0) -> Lowered:
    """Programs for every core of ``chip``; with ``weights`` (functional mode) the HBM
    images of weights and inputs become data segments of core 0's program. With
    ``confirm``, each GEMM's ``top`` tilings by estimate are simulated and the fastest kept
    (the mapper never runs the simulator itself: the caller passes it in)."""
    tilings = _choose_tilings(graph, chip, confirm, top)
    graph = _choose_layouts(graph, chip, tilings, layout)
    addr = _allocate(graph, tilings)
    ctx = _Ctx(graph, chip, addr, tilings, weights, [])
    per_core: list[list[Item]] = [[] for _ in range(chip.cores)]
    boundary = sync(barrier_group)
    kinds = []
    alone: list[dict[int, Program]] = []
    for node in graph.nodes:
        progs = _kernel(ctx, node)
        if progs is None:
            continue
        kinds.append((node.name, node.op))
        for core in range(chip.cores):
            body = progs[core] if core < len(progs) else []
            per_core[core] += resolve(body, base=len(per_core[core])) + list(boundary)
        alone.append({core: Program(tuple(resolve(progs[core] if core < len(progs) else [])) +
                                    boundary + (build("halt"),)) for core in range(chip.cores)})
    if weights is not None:
        _data(ctx, inputs or {})
    programs = {}
    for core, items in enumerate(per_core):
        data = tuple(ctx.segments) if core == 0 else ()
        programs[core] = Program(tuple(items) + (build("halt"),), data)
    layouts = {n.name: n.attrs["w_layout"] for n in graph.nodes if n.op == "linear"}
    return Lowered(programs, addr, tilings, kinds, alone, layouts)


# ---- layout ---------------------------------------------------------------------------------

def _choose_tilings(graph: Graph, chip: ChipConfig, confirm: Confirm | None = None,
                    top: int = 3) -> dict[str, Tiling]:
    out: dict[str, Tiling] = {}
    seen: dict[tuple, Tiling] = {}
    for node in graph.nodes:
        if node.op != "linear":
            continue
        g = _gemm(graph, node, {}, Tiling(1, 1, 1))
        key = (g.m, g.k, g.n, g.adt, g.wdt, g.cdt, g.sparse, g.extras)
        if key not in seen:
            try:
                ranked = choose(g, chip, top if confirm else 1)
            except ValueError as exc:
                raise MappingError(str(exc)) from None
            seen[key] = ranked[0].tiling if len(ranked) == 1 or confirm is None else \
                min((s.tiling for s in ranked), key=lambda t: confirm(_alone(g, t, chip)))
        out[node.name] = seen[key]
    return out


def _choose_layouts(graph: Graph, chip: ChipConfig, tilings: dict[str, Tiling],
                    option: str) -> Graph:
    """Each weight's HBM layout for the tiles its GEMM will read (``mapper.layout``)."""
    out = Graph(graph.tensors, [])
    for node in graph.nodes:
        if node.op == "linear":
            g = _gemm(graph, node, {}, tilings[node.name])
            node = node.with_attrs(w_layout=choose_layout(g, tilings[node.name],
                                                          chip.core.dma.burst_bytes, option))
        out.nodes.append(node)
    return out


def _alone(g: Gemm, t: Tiling, chip: ChipConfig) -> dict[int, Program]:
    progs = gemm_programs(g, t, chip.cores)
    return {c: Program(tuple(resolve(p)) + (build("halt"),)) for c, p in enumerate(progs)}


def _allocate(graph: Graph, tilings: dict[str, Tiling]) -> dict[str, int]:
    """Bump allocation in HBM; weights take their blocked size; renames alias."""
    addr: dict[str, int] = {}
    pos = 0
    sizes = {t.name: t.nbytes for t in graph.tensors.values()}
    for node in graph.nodes:
        if node.op == "linear":
            w = node.inputs[1]
            sizes[w] = blocked_size(_gemm(graph, node, {}, tilings[node.name]),
                                    tilings[node.name])
    # views: a renamed tensor, a row slice of one, rows placed into one (name -> base, rows)
    views: dict[str, tuple[str, int]] = {}
    for n in graph.nodes:
        if n.op == "rename":
            views[n.outputs[0]] = (n.inputs[0], 0)
        elif n.op == "slice_rows":
            views[n.outputs[0]] = (n.inputs[0], n.attrs["first"])
        elif n.op == "place_rows":
            views[n.inputs[0]] = (n.outputs[0], n.attrs["first"])
    for name in graph.tensors:
        if name in views:
            continue
        addr[name] = pos
        pos += -(-sizes[name] // ALIGN) * ALIGN
    pending = dict(views)
    while pending:
        progress = False
        for name, (base, rows) in list(pending.items()):
            if base in addr:
                t = graph.tensors[base]
                addr[name] = addr[base] + t.dtype.nbytes(rows * (t.shape[1] if len(t.shape) > 1
                                                                 else 1))
                del pending[name]
                progress = True
        if not progress:
            raise MappingError(f"circular tensor views: {', '.join(sorted(pending))}")
    return addr


# ---- kernels --------------------------------------------------------------------------------

def _gemm(graph: Graph, node: Node, addr: dict[str, int], t: Tiling) -> Gemm:
    a, w = graph.tensors[node.inputs[0]], graph.tensors[node.inputs[1]]
    out = graph.tensors[node.outputs[0]]
    at = addr.get
    return Gemm(
        m=a.shape[0], k=a.shape[1], n=w.shape[1], a=at(a.name, 0), w=at(w.name, 0),
        c=at(out.name, 0), adt=a.dtype, wdt=w.dtype, cdt=out.dtype,
        act=node.attrs.get("act"),
        bias=at(node.inputs[2], 0) if node.attrs.get("bias") else None,
        scale=at(node.attrs["scale"], 0) if node.attrs.get("scale") else None,
        residual=at(node.attrs["residual"], 0) if node.attrs.get("residual") else None,
        row_scale=at(node.attrs["row_scale"], 0) if node.attrs.get("row_scale") else None,
        sparse=bool(node.attrs.get("sparse")), decode=node.attrs.get("decode"),
        table=at(node.attrs["table"], 0) if node.attrs.get("table") else None,
        group=int(node.attrs.get("group", 0)),
        w_layout=node.attrs.get("w_layout", "blocked"), name=node.name)


MAX_ROWS_PER_TILE = 128  # rows of a row-wise tile at most (fewer when SRAM or rows are short)
TILES_PER_CORE = 4  # row-wise tiles each core aims for, so DMA and math overlap


def _kernel(ctx: _Ctx, node: Node) -> list[list[Item]] | None:
    g, chip, addr = ctx.graph, ctx.chip, ctx.addr
    cores = chip.cores
    T = lambda name: g.tensors[name]  # noqa: E731
    if node.op in ("rename", "slice_rows", "place_rows"):
        return None  # views: no data moves
    if node.op == "replicate_rows":
        return _replicate(ctx, node)
    if node.op == "alltoall":  # one core exchanges the blocks with the group's chips
        src, dst = T(node.inputs[0]), T(node.outputs[0])
        return [[build("net.alltoall", hbm(addr[dst.name]), hbm(addr[src.name]),
                       src.elements // node.attrs["ep"], src.dtype, node.attrs["group"])]]
    if node.op == "sum_copies":
        back, res, out = T(node.inputs[0]), T(node.inputs[1]), T(node.outputs[0])
        rows, cols, k = out.shape[0], out.shape[1], node.attrs["copies"]
        views = tuple(View(addr[back.name] + back.dtype.nbytes(j * rows * cols), cols,
                           back.dtype) for j in range(k)) + (View(addr[res.name], cols,
                                                                  res.dtype),)
        kern = RowKernel(rows, views, View(addr[out.name], cols, out.dtype),
                         sum_op(cols, out.dtype, k + 1), (),
                         MAX_ROWS_PER_TILE, node.name,
                         lambda c: sum_op(c, out.dtype, k + 1))
        return _rowwise(kern, chip)
    if node.op == "linear":
        return gemm_programs(_gemm(g, node, addr, ctx.tilings[node.name]),
                             ctx.tilings[node.name], cores)
    if node.op == "norm":
        x, out = T(node.inputs[0]), T(node.outputs[0])
        cols = x.shape[1]
        k = RowKernel(x.shape[0], (View(addr[x.name], cols, x.dtype),),
                      View(addr[out.name], cols, out.dtype),
                      norm_op(node.attrs["kind"], cols, x.dtype, out.dtype, node.attrs["eps"]),
                      (Param(addr[node.inputs[1]], T(node.inputs[1]).shape[0]),),
                      MAX_ROWS_PER_TILE, node.name)
        return _rowwise(k, chip)
    if node.op == "rope":
        qkv = T(node.inputs[0])
        view = View(addr[qkv.name], node.attrs["cols"], qkv.dtype, qkv.shape[1])
        table = addr[node.inputs[1]]
        k = RowKernel(qkv.shape[0], (view,), view,
                      rope_op(node.attrs["cols"], node.attrs["hd"], qkv.dtype),
                      (Param(table, node.attrs["hd"], per_row=True),),
                      MAX_ROWS_PER_TILE, node.name)
        return _rowwise(k, chip)
    if node.op == "silu_mul":
        gu, out = T(node.inputs[0]), T(node.outputs[0])
        f = node.attrs["ffn"]
        e = gu.dtype.nbytes(1)
        k = RowKernel(gu.shape[0], (View(addr[gu.name], f, gu.dtype, 2 * f),
                                    View(addr[gu.name] + f * e, f, gu.dtype, 2 * f)),
                      View(addr[out.name], f, out.dtype), silu_mul_op(f, out.dtype),
                      (), MAX_ROWS_PER_TILE, node.name, lambda c: silu_mul_op(c, out.dtype))
        return _rowwise(k, chip)
    if node.op == "allreduce":  # one core of the chip all-reduces the buffer in place
        t = T(node.inputs[0])
        ref = hbm(addr[t.name])
        return [[build("net.allreduce", ref, ref, t.elements, t.dtype, node.attrs["group"])]]
    if node.op == "rms_scale":
        x, out = T(node.inputs[0]), T(node.outputs[0])
        cols = x.shape[1]
        k = RowKernel(x.shape[0], (View(addr[x.name], cols, x.dtype),),
                      View(addr[out.name], 1, DType.FP32), rms_scale_op(cols, x.dtype),
                      (Param(addr[node.inputs[1]], 1),),
                      MAX_ROWS_PER_TILE, node.name)
        return _rowwise(k, chip)
    if node.op == "act_scale":
        x, out = T(node.inputs[0]), T(node.outputs[0])
        cols = x.shape[1]
        k = RowKernel(x.shape[0], (View(addr[x.name], cols, x.dtype),),
                      View(addr[out.name], 1, DType.FP32),
                      absmax_scale_op(cols, x.dtype, node.attrs["qmax"]),
                      (Param(addr[node.inputs[1]], 1),), MAX_ROWS_PER_TILE,
                      node.name)
        return _rowwise(k, chip)
    if node.op == "act_quant":
        x, out = T(node.inputs[0]), T(node.outputs[0])
        cols = x.shape[1]
        k = RowKernel(x.shape[0], (View(addr[x.name], cols, x.dtype),),
                      View(addr[out.name], cols, out.dtype),
                      quant_rows_op(cols, x.dtype, out.dtype),
                      (Param(addr[node.inputs[1]], 1, per_row=True),),
                      MAX_ROWS_PER_TILE, node.name,
                      lambda c: quant_rows_op(c, x.dtype, out.dtype))
        return _rowwise(k, chip)
    if node.op in ("act", "add"):
        out = T(node.outputs[0])
        cols = out.shape[1]
        views = tuple(View(addr[n], cols, T(n).dtype) for n in node.inputs)
        def op_for(c: int):  # noqa: ANN202
            return (add_op(c, out.dtype) if node.op == "add"
                    else act_op(node.attrs["fn"], c, out.dtype))
        k = RowKernel(out.shape[0], views, View(addr[out.name], cols, out.dtype), op_for(cols),
                      (), MAX_ROWS_PER_TILE, node.name, op_for)
        return _rowwise(k, chip)
    if node.op == "kv_append":
        return _kv_append(ctx, node)
    if node.op == "attention":
        return _attention(ctx, node)
    raise MappingError(f"no kernel for op '{node.op}' ({node.name})")


MIN_BLOCK_ROWS = 8  # rows per tile a column block aims to keep (so DMA and math overlap)


def _rowwise(k: RowKernel, chip: ChipConfig) -> list[list[Item]]:
    """Per-core programs of a row-wise kernel; an element-wise kernel of which not even one
    row fits the SRAM runs as column blocks, each with rows enough per tile to pipeline."""
    if k.op_for is None or sram_bytes(replace(k, rows_per_tile=1)) <= chip.core.sram.capacity:
        return row_programs(_fit(k, chip), chip.cores)  # whole rows fit: tiles of rows
    wide = replace(k, rows_per_tile=min(k.rows, MIN_BLOCK_ROWS))
    cols = k.out.cols
    width = cols
    while width > k.col_align and sram_bytes(replace(
            wide, inputs=tuple(replace(v, cols=width) for v in k.inputs),
            out=replace(k.out, cols=width))) > chip.core.sram.capacity:
        width = max(k.col_align, (width // 2) // k.col_align * k.col_align)
    blocks = [column_block(k, c0, min(width, cols - c0)) for c0 in range(0, cols, width)]
    return concat_programs([row_programs(_fit(b, chip), chip.cores) for b in blocks])


def _fit(k: RowKernel, chip: ChipConfig) -> RowKernel:
    """Rows per tile: a power of two (up to the tile cap) that gives every core a few tiles
    to pipeline (loads of one under the math of another), halved until the kernel's double
    buffers fit the SRAM."""
    from dataclasses import replace

    share = max(1, -(-k.rows // (chip.cores * TILES_PER_CORE)))
    rows = min(k.rows_per_tile, 1 << (share - 1).bit_length())
    k = replace(k, rows_per_tile=rows)
    while sram_bytes(k) > chip.core.sram.capacity and k.rows_per_tile > 1:
        k = replace(k, rows_per_tile=k.rows_per_tile // 2)
    if sram_bytes(k) > chip.core.sram.capacity:
        raise MappingError(f"{k.name}: one row of {k.inputs[0].cols} columns does not fit "
                           f"the {chip.core.sram.capacity} B SRAM (this op needs whole rows; "
                           f"a chip with more SRAM per core maps it)")
    return k


def _replicate(ctx: _Ctx, node: Node) -> list[list[Item]]:
    """``copies`` consecutive copies of a [T, H] tensor (each token once per routed expert):
    DMA only, load then store, chunks dealt to the cores."""
    src, dst = ctx.graph.tensors[node.inputs[0]], ctx.graph.tensors[node.outputs[0]]
    rows, cols = src.shape
    row_bytes = src.dtype.nbytes(cols)
    chunk = max(1, min(rows, ctx.chip.core.sram.capacity // row_bytes, 65535))
    jobs = [(r0, j) for j in range(node.attrs["copies"]) for r0 in range(0, rows, chunk)]
    progs: list[list[Item]] = [[] for _ in range(min(ctx.chip.cores, len(jobs)))]
    for i, (r0, j) in enumerate(jobs):
        n = min(chunk, rows - r0)
        progs[i % len(progs)] += [
            build("dma.load", sram(0), hbm(ctx.addr[src.name] + r0 * row_bytes), src.dtype, n,
                  cols),
            build("dma.store", hbm(ctx.addr[dst.name] + (j * rows + r0) * row_bytes), sram(0),
                  src.dtype, n, cols)]
    return progs


def _kv_append(ctx: _Ctx, node: Node) -> list[list[Item]]:
    """Copy the new tokens' K and V rows into the caches (DMA only: load, then store)."""
    g, addr = ctx.graph, ctx.addr
    qkv = g.tensors[node.inputs[0]]
    kc = g.tensors[node.outputs[0]]
    batch, kvh, max_ctx, hd = kc.shape
    q_dim, kv_dim = node.attrs["q_dim"], node.attrs["kv_dim"]
    t_all = qkv.shape[0]
    q_len = t_all // batch
    past = max_ctx - q_len
    e = qkv.dtype.nbytes(1)
    jobs = []
    for b in range(batch):
        for h in range(kvh):
            for which, cache in ((0, node.outputs[0]), (1, node.outputs[1])):
                col = q_dim + which * kv_dim + h * hd
                src = addr[qkv.name] + (b * q_len * qkv.shape[1] + col) * e
                dst = addr[cache] + (((b * kvh + h) * max_ctx) + past) * hd * e
                jobs.append((src, dst))
    rows_cap = max(1, ctx.chip.core.sram.capacity // (hd * e))
    progs: list[list[Item]] = [[] for _ in range(min(ctx.chip.cores, len(jobs)))]
    for i, (src, dst) in enumerate(jobs):
        seq = progs[i % len(progs)]
        for r0 in range(0, q_len, rows_cap):
            rows = min(rows_cap, q_len - r0)
            seq += [build("dma.load", sram(0), hbm(src + r0 * qkv.shape[1] * e), qkv.dtype, rows,
                          hd, stride=qkv.shape[1]),
                    build("dma.store", hbm(dst + r0 * hd * e), sram(0), qkv.dtype, rows, hd)]
    return progs


def _attention(ctx: _Ctx, node: Node) -> list[list[Item]]:
    g, addr, chip = ctx.graph, ctx.addr, ctx.chip
    qkv, kc = g.tensors[node.inputs[0]], g.tensors[node.inputs[1]]
    out = g.tensors[node.outputs[0]]
    batch, kvh, max_ctx, hd = kc.shape
    heads = out.shape[1] // hd
    q_len = qkv.shape[0] // batch
    best = None
    for tq in (128, 64, 32, 16):
        for tkv in (128, 64, 32, 16):
            a = Attention(batch, heads, kvh, hd, q_len, max_ctx, max_ctx - q_len,
                          node.attrs["causal"], addr[qkv.name], qkv.shape[1], addr[kc.name],
                          addr[node.inputs[2]], max_ctx, addr[out.name], qkv.dtype,
                          min(tq, max(q_len, 1)), tkv)
            r = regions(a)
            if r.sram_bytes <= chip.core.sram.capacity and r.acc_bytes <= chip.core.acc.capacity:
                best = a
                break
        if best:
            break
    if best is None:
        raise MappingError(f"{node.name}: no attention tile fits the core's SRAM/accumulator")
    return attention_programs(best, chip.cores)


# ---- functional data -------------------------------------------------------------------------

def _data(ctx: _Ctx, inputs: dict[str, np.ndarray]) -> None:
    from isa import numerics as nx
    from mapper.layout import block_weights

    g, addr = ctx.graph, ctx.addr
    blocked = {n.inputs[1]: n for n in g.nodes if n.op == "linear"}
    for name, t in g.tensors.items():
        if t.kind is Kind.WEIGHT:
            values = ctx.weights[name]  # type: ignore[index]
            if name in blocked:
                node = blocked[name]
                if node.attrs.get("fold_gamma"):  # rmsnorm(x) W = diag(1/rms) x (gamma W)
                    values = ctx.weights[node.attrs["fold_gamma"]][:, None] * values
                raw = block_weights(values, _gemm(g, node, addr, ctx.tilings[node.name]),
                                    ctx.tilings[node.name], ctx.weights.get(name + ".gscale"))
            else:
                raw = nx.to_bytes(values, t.dtype).tobytes()
            ctx.segments.append(DataSegment(Space.HBM, addr[name], raw))
        elif t.kind in (Kind.INPUT, Kind.KV_CACHE) and name in inputs:
            raw = nx.to_bytes(inputs[name], t.dtype).tobytes()
            ctx.segments.append(DataSegment(Space.HBM, addr[name], raw))
