"""Lower a graph to one program per core: HBM layout, a kernel per node, syncs between them.

Nodes run one after another; between two nodes every core drains its engines (``barrier``),
meets all other cores (``net.barrier``: a kernel boundary, charged the chip's kernel gap)
and drains again, so each kernel starts from a clean, balanced state.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from hardware.chip import ChipConfig
from isa import DataSegment, Instruction, Program, Space, build
from isa.gcpause import while_paused
from isa.table import BY_MNEMONIC
from mapper.emit import resolve
from mapper.graph import Graph, Kind
from mapper.kernels.gemm import Gemm, Tiling
from mapper.layout import blocked_size, choose_layout
from mapper.lowerings import Ctx, MappingError, gemm_kernel, gemm_of, kernel
from mapper.ops import Op
from mapper.tiling import choose

__all__ = ["Confirm", "Lowered", "MappingError", "lower", "sync"]

ALIGN = 256
def sync(group: int = 0) -> tuple:
    """A kernel boundary: the core drains, meets the chip's other cores (``group``: this
    chip's own group on a multi-chip system; 0 on one chip), and drains again."""
    return (build("barrier"), build("net.barrier", group), build("barrier"))


SYNC = sync(0)


@dataclass
class Lowered:
    """The per-core programs and everything needed to read their results."""

    addresses: dict[str, int]
    tilings: dict[str, Tiling]
    kernels: list[tuple[str, str]] = field(default_factory=list)  # (node, kind)
    # each kernel alone (ending with its sync): their times add up to the whole program's
    kernel_programs: list[dict[int, Program]] = field(default_factory=list)
    layouts: dict[str, str] = field(default_factory=dict)  # linear node -> weight layout
    data: tuple[DataSegment, ...] = ()  # core 0's initial HBM images (functional mode)
    _whole: dict[int, Program] | None = field(default=None, repr=False)

    @property
    def programs(self) -> dict[int, Program]:
        """The whole graph per core, kernels separated by chip-wide syncs: the kernels
        alone, joined (their loops' ends moved by where each kernel starts), made when
        first asked. Most callers price the kernels alone; joining copies every
        instruction, a pass they need not pay."""
        if self._whole is None:
            self._whole = {core: _joined([k[core] for k in self.kernel_programs],
                                         self.data if core == 0 else ())
                           for core in range(len(self.kernel_programs[0]) if
                                             self.kernel_programs else 0)}
        return self._whole


_LOOP = BY_MNEMONIC["loop"].opcode
_END = BY_MNEMONIC["loop"].index("end")


def _joined(alone: list[Program], data: tuple[DataSegment, ...]) -> Program:
    """Kernels' programs one after another (each without its ``halt``), then one ``halt``;
    a loop's end is an absolute index, so it moves by where its kernel starts."""
    out: list[Instruction] = []
    for p in alone:
        base = len(out)
        body = p.instructions[:-1]
        if base == 0:
            out += body
            continue
        for ins in body:
            if ins.opcode == _LOOP:
                args = list(ins.args)
                args[_END] += base
                ins = Instruction(ins.opcode, tuple(args))
            out.append(ins)
    return Program(tuple(out) + (build("halt"),), data)


# programs -> simulated seconds; it may carry ``memo``, a mapping (get / item assignment) in
# which tiling decisions are kept (by GEMM shape and types) and found again
Confirm = Callable[[dict[int, Program]], float]


@while_paused
def lower(graph: Graph, chip: ChipConfig, weights: dict[str, np.ndarray] | None = None,
          inputs: dict[str, np.ndarray] | None = None, confirm: Confirm | None = None,
          top: int = 3, layout: str = "auto", barrier_group: int = 0) -> Lowered:
    """Programs for every core of ``chip``; with ``weights`` (functional mode) the HBM
    images of weights and inputs become data segments of core 0's program. With
    ``confirm``, each GEMM's ``top`` tilings by estimate are simulated and the fastest kept
    (the mapper never runs the simulator itself: the caller passes it in)."""
    tilings = _choose_tilings(graph, chip, confirm, top, layout)
    graph = _choose_layouts(graph, chip, tilings, layout)
    addr, top = _allocate(graph, tilings)
    boundary = sync(barrier_group)
    ctx = Ctx(graph, chip, addr, tilings, weights, [], top, boundary)
    kinds = []
    alone: list[dict[int, Program]] = []
    for node in graph.nodes:
        progs = kernel(ctx, node)
        if progs is None:
            continue
        kinds.append((node.name, node.op))
        alone.append({core: Program(tuple(resolve(progs[core] if core < len(progs) else [])) +
                                    boundary + (build("halt"),)) for core in range(chip.cores)})
    if weights is not None:
        _data(ctx, inputs or {})
    layouts = {n.name: n.attrs.w_layout for n in graph.nodes if n.op == Op.LINEAR}
    low = Lowered(addr, tilings, kinds, alone, layouts, tuple(ctx.segments))
    if not alone:  # no kernel: each core's program is a halt (with core 0's data)
        low._whole = {core: Program((build("halt"),), low.data if core == 0 else ())
                      for core in range(chip.cores)}
    return low


# ---- layout ---------------------------------------------------------------------------------

def _choose_tilings(graph: Graph, chip: ChipConfig, confirm: Confirm | None = None,
                    top: int = 3, layout: str = "auto") -> dict[str, Tiling]:
    """Each GEMM's tiling: remembered, or decided (distinct shapes side by side on the
    machine's cores: ``mapper.forkmap``)."""
    from mapper.forkmap import counted, fork_map, gathered

    memo = getattr(confirm, "memo", None)  # a caller's store of earlier decisions
    names: list[tuple[str, tuple]] = []
    gemms: dict[tuple, Gemm] = {}
    for node in graph.nodes:
        if node.op != Op.LINEAR:
            continue
        g = gemm_of(graph, node, {}, Tiling(1, 1, 1))
        fixed = _fixed_layout(graph, node)
        g = dataclasses.replace(g, w_layout=fixed or layout)  # "auto": per candidate
        # everything the choice depends on: a grouped or transposed GEMM of the same
        # shape is another GEMM (its tiles, its loads), and so is another weight layout
        key = (g.m, g.k, g.n, g.adt, g.wdt, g.cdt, g.sparse, g.extras, g.decode, g.group,
               g.a_trans, g.w_layout, g.groups, g.group_rows)
        names.append((node.name, key))
        gemms.setdefault(key, g)
    depth = top if confirm else 1
    seen = {key: t for key in gemms if (t := _remembered(memo, (key, depth))) is not None}
    todo = [key for key in gemms if key not in seen]
    if confirm is None:
        decided = [_decide(gemms[k], chip, None, top) for k in todo]
    else:
        one = counted(lambda g: _decide(g, chip, confirm, top), getattr(confirm, "counters", None))
        decided = gathered(fork_map(one, [gemms[k] for k in todo]),
                           getattr(confirm, "add_counters", None))
    seen.update(zip(todo, decided))
    if memo is not None:
        for key, t in seen.items():
            memo[repr((key, depth))] = dataclasses.astuple(t)
    return {name: seen[key] for name, key in names}


def _decide(g: Gemm, chip: ChipConfig, confirm: Confirm | None, top: int) -> Tiling:
    """The best tiling by estimate, or of the ``top`` by estimate the fastest simulated."""
    try:
        ranked = choose(g, chip, top if confirm else 1)
    except ValueError as exc:
        raise MappingError(str(exc)) from None
    if len(ranked) == 1 or confirm is None:
        return ranked[0].tiling

    def as_run(t: Tiling) -> Gemm:  # the weight layout this tiling would be lowered with
        if g.w_layout in ("blocked", "row", "col"):
            return g
        return dataclasses.replace(g, w_layout=choose_layout(
            g, t, chip.core.dma.burst_bytes, g.w_layout))
    return min((s.tiling for s in ranked), key=lambda t: confirm(_alone(as_run(t), t, chip)))


def _remembered(memo, key: tuple) -> Tiling | None:  # noqa: ANN001
    """A decision taken before for the same GEMM on the same chip, with the same code."""
    found = memo.get(repr(key)) if memo is not None else None
    return Tiling(*found) if found else None


def _choose_layouts(graph: Graph, chip: ChipConfig, tilings: dict[str, Tiling],
                    option: str) -> Graph:
    """Each weight's HBM layout for the tiles its GEMM will read (``mapper.layout``)."""
    out = Graph(graph.tensors, [])
    for node in graph.nodes:
        if node.op == Op.LINEAR:
            fixed = _fixed_layout(graph, node)
            g = gemm_of(graph, node, {}, tilings[node.name])
            node = node.with_attrs(w_layout=fixed or choose_layout(
                g, tilings[node.name], chip.core.dma.burst_bytes, option))
        out.nodes.append(node)
    return out


def _fixed_layout(graph: Graph, node) -> str | None:  # noqa: ANN001
    """A projection's weight layout when its tiling has no say in it, else None."""
    if node.attrs.w_trans:
        return "col"  # W as the forward pass stored it
    if graph.tensors[node.inputs[1]].kind is not Kind.WEIGHT:
        return "row"  # an activation (a weight gradient's dY)
    if node.attrs.groups > 1 or node.attrs.group_rows:
        return "row"  # the groups' matrices stacked [G*K, N]
    return None


def _alone(g: Gemm, t: Tiling, chip: ChipConfig) -> dict[int, Program]:
    """The GEMM as its own kernel (to confirm a tiling by simulating it), split-K included;
    its scratch after the GEMM's own operands, as far as an estimate needs."""
    top = max(g.a + g.adt.nbytes(g.m * (g.lda or g.k)), g.w + g.wdt.nbytes(g.k * g.n) * 2,
              g.c + g.cdt.nbytes(g.m * (g.ldc or g.n)))
    progs = gemm_kernel(g, t, chip, -(-top // ALIGN) * ALIGN, SYNC)
    return {c: Program(tuple(resolve(p)) + (build("halt"),)) for c, p in enumerate(progs)}


def _allocate(graph: Graph, tilings: dict[str, Tiling]) -> tuple[dict[str, int], int]:
    """Bump allocation in HBM; weights take their blocked size; renames alias. Also the
    first byte after them all (scratch)."""
    addr: dict[str, int] = {}
    pos = 0
    sizes = {t.name: t.nbytes for t in graph.tensors.values()}
    for node in graph.nodes:
        if node.op == Op.LINEAR:
            w = node.inputs[1]
            sizes[w] = blocked_size(gemm_of(graph, node, {}, tilings[node.name]),
                                    tilings[node.name]) * max(1, node.attrs.groups,
                                                              len(node.attrs.group_rows))
    # views: a renamed tensor, a row slice of one, rows placed into one (name -> base, rows)
    views: dict[str, tuple[str, int]] = {}
    for n in graph.nodes:
        if n.op == Op.RENAME:
            views[n.outputs[0]] = (n.inputs[0], 0)
        elif n.op == Op.SLICE_ROWS:
            views[n.outputs[0]] = (n.inputs[0], n.attrs.first)
        elif n.op == Op.PLACE_ROWS:
            views[n.inputs[0]] = (n.outputs[0], n.attrs.first)
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
    return addr, pos  # pos: the first free byte after every tensor


# ---- functional data -------------------------------------------------------------------------

def _data(ctx: Ctx, inputs: dict[str, np.ndarray]) -> None:
    from isa import numerics as nx
    from mapper.layout import block_weights

    g, addr = ctx.graph, ctx.addr
    blocked = {n.inputs[1]: n for n in g.nodes if n.op == Op.LINEAR}
    for name, t in g.tensors.items():
        if t.kind is Kind.WEIGHT:
            values = ctx.weights[name]  # type: ignore[index]
            if name in blocked:
                node = blocked[name]
                if node.attrs.fold_gamma:  # rmsnorm(x) W = diag(1/rms) x (gamma W)
                    values = ctx.weights[node.attrs.fold_gamma][:, None] * values
                raw = block_weights(values, gemm_of(g, node, addr, ctx.tilings[node.name]),
                                    ctx.tilings[node.name], ctx.weights.get(name + ".gscale"))
            else:
                raw = nx.to_bytes(values, t.dtype).tobytes()
            ctx.segments.append(DataSegment(Space.HBM, addr[name], raw))
        elif t.kind in (Kind.INPUT, Kind.KV_CACHE) and name in inputs:
            raw = nx.to_bytes(inputs[name], t.dtype).tobytes()
            ctx.segments.append(DataSegment(Space.HBM, addr[name], raw))
