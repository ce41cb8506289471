"""Simulated costs of the pieces of a training step, each kernel through the kernel-cost
cache: one layer's forward and backward (on one chip, or on a tensor-parallel group with its
collectives), the head with its loss, the optimizer step, a collective on a group.

A layer is lowered once as its training graph (``mapper.backward``); its kernels are split
into forward and backward by name, so the forward cost is exactly the forward kernels'
sum, and recomputation re-runs those same kernels.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass

from experiments.pieces import each
from hardware.chip import ChipConfig
from hardware.system import SystemConfig
from hardware.topology import Topology
from isa import DType, MemRef, Program, Space, build
from mapper.backward import NO_SHARD, GradMode, training_graph, training_head
from mapper.emit import resolve
from mapper.kernels.adamw import AdamW, adamw_programs, sram_bytes
from mapper.kernels.multi_tensor import core_programs, foreach_adamw, fused_adamw, launches
from mapper.layers import Phase, Shard
from mapper.lower import lower, sync
from mapper.parallel import CHIP_GROUP
from simulator.result import SimResult
from simulator.run import simulate, simulate_system

DEFAULT_GRADS = GradMode()


@dataclass(frozen=True)
class Cost:
    """Time, energy, FLOPs and HBM bytes of some kernels on one chip (per chip of a group)."""

    time_s: float = 0.0
    energy_j: float = 0.0
    flops: float = 0.0
    hbm_bytes: float = 0.0
    link_bytes: float = 0.0  # bytes on the wire x links crossed (protocol overhead included)

    @classmethod
    def of(cls, r: SimResult, chips: int = 1) -> Cost:
        return cls(r.time_s, r.energy_total_j / chips, r.flops / chips,
                   (r.bytes.get("hbm_read", 0.0) + r.bytes.get("hbm_write", 0.0)) / chips,
                   r.bytes.get("link_bytes", 0.0) / chips)

    def __add__(self, o: Cost) -> Cost:
        return Cost(*(a + b for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(o))))

    def __mul__(self, k: float) -> Cost:
        return Cost(*(a * k for a in dataclasses.astuple(self)))

    __rmul__ = __mul__


@dataclass(frozen=True)
class LayerCosts:
    fwd: Cost
    bwd: Cost
    attention_fwd: Cost  # what selective recomputation re-runs
    kernels: tuple[tuple[str, str, float], ...]  # (node, kind, seconds)


def _split(kernels: list[tuple[str, str]], results: list[SimResult], chips: int
           ) -> LayerCosts:
    fwd, bwd, att = Cost(), Cost(), Cost()
    rows = []
    for (node, kind), r in zip(kernels, results):
        c = Cost.of(r, chips)
        rows.append((node, kind, r.time_s))
        if node.startswith("bwd."):
            bwd = bwd + c
        else:
            fwd = fwd + c
            if node.endswith(".attention"):
                att = att + c
    return LayerCosts(fwd, bwd, att, tuple(rows))


def _remembered(kind: str, parts: tuple, compute) -> LayerCosts:  # noqa: ANN001
    """A piece's costs from the kernel-cost store when the same piece (model, shapes, chip or
    group, code of isa / hardware / simulator / mapper) was priced before: a warm step
    neither lowers nor simulates. Exact: the value is what ``compute`` returned then."""
    import hashlib
    import json

    from simulator import cache

    store = cache.current()
    if store is None:
        return compute()
    key = f"train-{kind}:" + hashlib.blake2b(repr((parts, cache.code_digest(
        (*cache.CODE, "mapper")))).encode(), digest_size=20).hexdigest()
    text = store.get_text(key)
    if text is not None:
        store.stats.hits += 1
        d = json.loads(text)
        return LayerCosts(Cost(*d["fwd"]), Cost(*d["bwd"]), Cost(*d["att"]),
                          tuple(tuple(k) for k in d["kernels"]))
    out = compute()
    store.put_text(key, json.dumps({"fwd": dataclasses.astuple(out.fwd),
                                    "bwd": dataclasses.astuple(out.bwd),
                                    "att": dataclasses.astuple(out.attention_fwd),
                                    "kernels": out.kernels}))
    return out


def layer_costs(model, chip: ChipConfig, phase: Phase, tp: int = 1,  # noqa: ANN001
                system: SystemConfig | None = None, grads: GradMode = DEFAULT_GRADS,
                kernels: str = "fused", sp: bool = False, ep: int = 1, ep_stride: int = 1
                ) -> LayerCosts:
    """One layer of one micro-batch, forward and backward, on a chip (``tp`` 1) or on the
    first ``tp`` chips of ``system`` as a tensor-parallel group (collectives simulated).
    ``kernels`` "eager": RMSNorm, RoPE (forward and its inverse in the backward) and
    SwiGLU's product as the kernel chains eager PyTorch launches (``mapper.eager``). ``sp``:
    Megatron's sequence parallelism (norms and residuals on T / tp rows, a reduce-scatter
    and an all-gather where tensor parallelism has an all-reduce, and their backwards).
    ``ep`` > 1 (with ``tp`` 1): the routed experts spread over ``ep`` replicas (chips 0,
    ``ep_stride``, ...: stage 0 of each), tokens exchanged by all-to-all on ``system`` and
    the busiest chip's load mapped (``mapper.routing``), forward and backward."""
    if ep > 1:
        assert system is not None and tp == 1
        peers = [d * ep_stride for d in range(ep)]
        parts = (model, chip, phase, grads, kernels, peers, system)
        return _remembered("layer-ep", parts,
                           lambda: _layer_costs_ep(model, chip, phase, system, grads, kernels,
                                                   peers))
    group = first_chips(system, tp) if tp > 1 and system is not None else None
    sp = sp and tp > 1
    parts = (model, chip, phase, tp, group, grads) + ((kernels,) if kernels != "fused" else ()) \
        + (("sp",) if sp else ())
    return _remembered("layer", parts,
                       lambda: _layer_costs(model, chip, phase, tp, system, grads, kernels, sp))


def _layer_costs_ep(model, chip: ChipConfig, phase: Phase, system: SystemConfig,  # noqa: ANN001
                    grads: GradMode, kernels: str, peers: list[int]) -> LayerCosts:
    """Every expert-parallel rank runs the busiest rank's programs (the mapped load), so
    one lowering serves them all; the all-to-alls run on the ranks' own chips ``peers`` of
    the system."""
    from experiments.train.step import TrainError

    ep = len(peers)
    if peers[-1] >= len(system.chips):
        raise TrainError(f"--ep {ep}: the system has {len(system.chips)} chips")
    low = lower(_graph(model, phase, Shard(1, 0, 0, ep=ep, ep_group=2), grads, kernels), chip,
                confirm=None, top=1, layout="row", barrier_group=1)
    results = each(lambda k: simulate_system(system, {(c, core): p for c in peers
                                                      for core, p in k.items()},
                                             groups={1: peers, 2: peers}),
                   low.kernel_programs)
    return _split(low.kernels, results, ep)


def _graph(model, phase: Phase, shard: Shard, grads: GradMode, kernels: str):  # noqa: ANN001, ANN202
    g = training_graph(model, phase, 1, shard=shard, grads=grads)
    if kernels == "eager":
        from mapper.eager import eager_composites

        g = eager_composites(g)
    return g


def _layer_costs(model, chip: ChipConfig, phase: Phase, tp: int,  # noqa: ANN001
                 system: SystemConfig | None, grads: GradMode, kernels: str,
                 sp: bool = False) -> LayerCosts:
    if tp == 1:
        low = lower(_graph(model, phase, NO_SHARD, grads, kernels), chip, confirm=None, top=1,
                    layout="row")
        return _split(low.kernels, each(lambda k: simulate(k, chip), low.kernel_programs), 1)
    assert system is not None
    group = list(range(tp))
    lows = each(lambda r: lower(_graph(model, phase, Shard(tp, r, 1, sp=sp), grads, kernels),
                                chip, confirm=None, top=1, layout="row", barrier_group=1),
                list(range(min(tp, 2))))
    sub = first_chips(system, tp)
    # rank 0 may run kernels the others do not (a row-parallel bias and its gradient): they
    # meet it at the kernel's group barrier with nothing to do
    idle = {c: Program(tuple(sync(1)) + (build("halt"),)) for c in range(chip.cores)}
    by_name = [dict(zip((n for n, _ in low.kernels), low.kernel_programs)) for low in lows]

    def run(name: str) -> SimResult:
        progs = {(c, core): p for c in group
                 for core, p in by_name[min(c, 1)].get(name, idle).items()}
        return simulate_system(sub, progs, groups={1: group})
    return _split(lows[0].kernels, each(run, [n for n, _ in lows[0].kernels]), tp)


def head_costs(model, chip: ChipConfig, phase: Phase, fp32_loss: bool,  # noqa: ANN001
               grads: GradMode = DEFAULT_GRADS) -> LayerCosts:
    """Final norm + LM head over every token, the loss gradient and the backward to d:h."""
    return _remembered("head", (model, chip, phase, fp32_loss, grads),
                       lambda: _head_costs(model, chip, phase, fp32_loss, grads))


def _head_costs(model, chip: ChipConfig, phase: Phase, fp32_loss: bool,  # noqa: ANN001
                grads: GradMode) -> LayerCosts:
    low = lower(training_head(model, phase, fp32_loss=fp32_loss, grads=grads), chip,
                confirm=None, top=1, layout="row")
    return _split(low.kernels, each(lambda k: simulate(k, chip), low.kernel_programs), 1)


def optimizer_cost(chip: ChipConfig, params: int, master_copy: bool) -> Cost:
    """One fused AdamW step over ``params`` fp32 parameters (``mapper.kernels.adamw``)."""
    if params <= 0:
        return Cost()
    f = 4 * params
    block = 4096
    a = AdamW(params, 0, f, 2 * f, 3 * f, 4 * f if master_copy else None, const=6 * f,
              block=block)
    while sram_bytes(a) > chip.core.sram.capacity and a.block > 256:
        a = dataclasses.replace(a, block=a.block // 2)
    progs = {c: Program(tuple(resolve(items)) + (build("halt"),))
             for c, items in enumerate(adamw_programs(a, chip.cores))}
    return Cost.of(simulate(progs, chip))


def param_tensors(model) -> list[int]:  # noqa: ANN001
    """Elements of each parameter tensor in the order a PyTorch model registers them:
    the embedding (and learned positions), every layer's weights, the final norm, the
    head (unless tied). Their sum is ``model.params``."""
    from mapper.graph import Kind
    from mapper.layers import build_layers
    from mapper.model import Position

    sizes = [model.vocab * model.hidden]
    if model.position is Position.LEARNED:
        sizes.append(model.max_seq * model.hidden)
    g = build_layers(model, Phase("prefill", 1, seq=1), 1)
    layer = [math.prod(t.shape) for n, t in g.tensors.items()
             if t.kind is Kind.WEIGHT and not n.endswith("rope.table")]
    for i in range(model.layers):
        scale = model.layer_params(i) / max(1, sum(layer))
        sizes += [max(1, round(n * scale)) for n in layer]
    sizes.append(model.hidden * (2 if getattr(model.norm, "value", model.norm) == "layernorm"
                                 else 1))
    if not model.tied_embeddings:
        sizes.append(model.vocab * model.hidden)
    return sizes


def pytorch_optimizer_cost(chip: ChipConfig, sizes: list[int], impl: str = "fused") -> Cost:
    """``torch.optim.AdamW`` over fp32 tensors of ``sizes`` elements as PyTorch runs it:
    ``fused`` one multi-tensor kernel, ``foreach`` eight (``mapper.kernels.multi_tensor``).
    Launches with the same blocks cost the same (kernels end in a barrier), so each distinct
    one is simulated once."""
    n = sum(sizes)
    a = AdamW(n, 0, 0, 0, 0)
    ops = [fused_adamw(a)] if impl == "fused" else foreach_adamw(a)
    offsets = [0, *itertools.accumulate(sizes)][:-1]
    bases = {name: 4 * i * n for i, name in enumerate(("p", "g", "m", "v", "d"))}
    total = Cost()
    for op in ops:
        seen: dict[tuple[int, ...], Cost] = {}
        for chunks in launches(sizes, op.depth):
            key = tuple(n for _, _, n in chunks)
            if key not in seen:
                progs = {c: Program(tuple(resolve(items + list(sync(0)))) + (build("halt"),))
                         for c, items in enumerate(core_programs(op, chunks, chip.cores, bases,
                                                                 offsets))}
                seen[key] = Cost.of(simulate(progs, chip))
            total = total + seen[key]
    return total


def collective_cost(system: SystemConfig, op: str, chips: list[int], nbytes: float,
                    dtype: DType = DType.BF16) -> Cost:
    """One collective (``allreduce``, ``reducescatter``, ``allgather``) of ``nbytes`` (the
    NCCL buffer: the all-reduce buffer, the gathered output, the scattered input) over
    ``chips`` of ``system``, simulated on its topology."""
    if len(chips) < 2 or nbytes <= 0:
        return Cost()
    count = int(nbytes // dtype.nbytes(1))
    if op in ("allgather", "reducescatter"):
        count //= len(chips)
    count = max(1, count)
    ins = build(f"net.{op}", MemRef(Space.HBM, 0), MemRef(Space.HBM, 0), count, dtype, 1)
    progs = {(c, 0): Program((ins, build("halt"))) for c in chips}
    groups = {1: list(chips)}
    groups.update({CHIP_GROUP + c: [c] for c in chips})
    return Cost.of(simulate_system(system, progs, groups=groups), len(chips))


def first_chips(system: SystemConfig, n: int) -> SystemConfig:
    """The first ``n`` chips of a system, joined as the system joins them (a cluster's
    first node's switch, when they fit in a node)."""
    topo = system.topology
    if topo.kind == "cluster":
        if n > topo.dims[1]:
            from experiments.train.step import TrainError

            raise TrainError(f"--tp {n}: a tensor-parallel group spans nodes of "
                             f"{topo.dims[1]} chips; keep it inside one node")
        return dataclasses.replace(system, chips=system.chips[:n],
                                   topology=Topology("switch", (n,)), scale_out=None)
    return dataclasses.replace(system, chips=system.chips[:n],
                               topology=dataclasses.replace(topo, dims=(n,)))


__all__ = ["Cost", "LayerCosts", "collective_cost", "first_chips", "head_costs",
           "layer_costs", "optimizer_cost", "pytorch_optimizer_cost"]


def layer_trace(model, chip: ChipConfig, phase: Phase, grads: GradMode = DEFAULT_GRADS,  # noqa: ANN001
                limit: int = 5_000_000) -> SimResult:
    """One layer's forward and backward kernels on one chip, traced (engines and links per
    core, for ``tessera train --trace``); refused up front when the trace would exceed
    ``limit`` events."""
    from simulator.result import sequence
    from simulator.tracesize import check_trace, trace_size

    low = lower(training_graph(model, phase, 1, grads=grads), chip, layout="row")
    check_trace(sum(trace_size({(0, c): p for c, p in k.items()}) for k in
                    low.kernel_programs), limit)
    return sequence([simulate(k, chip, trace=True) for k in low.kernel_programs])
