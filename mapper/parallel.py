"""Splitting a model over a system: tensor (Megatron), pipeline and data parallelism.

Chip ``c`` of a TP x PP x DP system is ``dp_rank * pp * tp + stage * tp + tp_rank``. Each
tensor-parallel group all-reduces after its row-parallel projections (chip group
``1 + dp_rank * pp + stage``); each chip ends its kernels with a barrier of its group, so
chips are coupled only by their collectives and transfers. Pipeline
stages hold contiguous layers and pass activations on with ``net.send`` / ``net.recv``;
data-parallel replicas share nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from hardware.chip import ChipConfig
from isa import MemRef, Program, Space, build
from mapper.layers import Phase, Shard, build_layers, check_shard, local_kv_heads
from mapper.lower import Confirm, lower
from mapper.passes import apply_passes
from mapper.pipeline import MapOptions
from mapper.weights import add_rope_tables, init_weights

CHIP_GROUP = 128  # a lone collective's chips (experiments.train.costs): 128 + c each
GROUPS = 255  # ISA group numbers are 8-bit; 0 is the chip itself


@dataclass(frozen=True)
class Parallel:
    tp: int = 1
    pp: int = 1
    dp: int = 1
    micro: int = 1  # micro-batches flowing through the pipeline stages
    ep: int = 1  # expert parallel: experts spread over the data-parallel replicas (ep == dp)
    cp: int = 1  # context parallel: a prefill's tokens split over this many chips
    sp: bool = False  # Megatron sequence parallelism inside each tensor-parallel group

    def __post_init__(self) -> None:
        for name in ("tp", "pp", "dp", "micro", "ep", "cp"):
            if getattr(self, name) < 1:
                flag = "micro-batches" if name == "micro" else name
                raise ValueError(f"--{flag} must be at least 1, got {getattr(self, name)}")
        if self.sp and self.tp < 2:
            raise ValueError("--sp: sequence parallelism splits a tensor-parallel group's "
                             "tokens; it needs --tp 2 or more")

    @property
    def chips(self) -> int:
        return self.tp * self.pp * self.dp * self.cp

    @property
    def rows(self) -> int:
        """Replica x context rank: the index ``d`` of ``chip_of`` (replica-major)."""
        return self.dp * self.cp


@dataclass
class SystemMapping:
    programs: dict[tuple[int, int], Program]
    groups: dict[int, list[int]]
    addresses: dict[int, dict[str, int]]  # per chip
    layer_factor: float  # whole model = factor x the mapped layers
    weights: dict[str, np.ndarray] | None = None
    inputs: dict[str, np.ndarray] = field(default_factory=dict)
    # pp == 1: kernel k of every chip, to be simulated one kernel at a time
    kernel_programs: list[dict[tuple[int, int], Program]] = field(default_factory=list)
    graphs: dict[int, object] = field(default_factory=dict)  # per chip, after the passes
    kernel_nodes: list[str] = field(default_factory=list)  # the node of each kernel
    # chip -> {group its programs name: the group it means}: replicas share one lowering
    aliases: dict[int, dict[int, int]] = field(default_factory=dict)


def chip_of(par: Parallel, dp: int, stage: int, rank: int) -> int:
    return dp * par.pp * par.tp + stage * par.tp + rank


def ep_base(par: Parallel) -> int:
    """Group numbers: tensor-parallel groups 1 .. dp x cp x pp, then the all-to-all groups
    of (stage, tensor rank), then the context-parallel groups of (replica, stage, tensor
    rank), then each chip's own."""
    return 1 + par.rows * par.pp


def cp_base(par: Parallel) -> int:
    return ep_base(par) + (par.pp * par.tp if par.ep > 1 else 0)


def chip_base(par: Parallel) -> int:
    return cp_base(par) + (par.dp * par.pp * par.tp if par.cp > 1 else 0)


def cp_group(par: Parallel, d: int, s: int, r: int) -> int:
    return cp_base(par) + ((d // par.cp) * par.pp + s) * par.tp + r


def groups_of(par: Parallel) -> dict[int, list[int]]:
    groups = {1 + d * par.pp + s: [chip_of(par, d, s, r) for r in range(par.tp)]
              for d in range(par.rows) for s in range(par.pp)}
    if par.cp > 1:
        groups.update({cp_group(par, d, s, r): [chip_of(par, d + x, s, r)
                                                 for x in range(par.cp)]
                       for d in range(0, par.rows, par.cp) for s in range(par.pp)
                       for r in range(par.tp)})
    groups.update({chip_base(par) + c: [c] for c in range(par.chips)})
    if par.ep > 1:
        groups.update({ep_base(par) + s * par.tp + r: [chip_of(par, d, s, r)
                                                      for d in range(par.dp)]
                       for s in range(par.pp) for r in range(par.tp)})
    return groups


def shard_of(par: Parallel, d: int, s: int, r: int) -> Shard:
    """Tensor rank ``r`` of stage ``s`` of replica ``d``: its shard and groups."""
    return Shard(par.tp, r, 1 + d * par.pp + s, par.ep, ep_base(par) + s * par.tp + r,
                 par.cp, d % par.cp, cp_group(par, d, s, r) if par.cp > 1 else 0, par.sp)


def check_parallel(model, par: Parallel, chips: int, batch: int) -> None:  # noqa: ANN001
    if par.cp > 1:
        if par.ep > 1 or par.pp > 1:
            raise ValueError("--cp: context parallelism runs with --tp and --dp (not --ep or "
                             "--pp)")
        if model.mla or model.sliding_window:
            raise ValueError(f"--cp: context parallelism of {model.name}'s attention (MLA or "
                             f"a sliding window) is not modelled")
    if par.chips != chips:
        raise ValueError(f"--tp {par.tp} x --pp {par.pp} x --dp {par.dp} x --cp {par.cp} = "
                         f"{par.chips} chips, "
                         f"but the system has {chips}")
    if chip_base(par) + chips - 1 > GROUPS:
        raise ValueError(f"{chips} chips as --tp {par.tp} --pp {par.pp} --dp {par.dp} need "
                         f"{chip_base(par) + chips - 1} synchronisation groups; the ISA has "
                         f"{GROUPS}: map a smaller system")
    check_shard(model, par.tp)
    if model.layers < par.pp:
        raise ValueError(f"--pp {par.pp} exceeds the model's {model.layers} layers")
    if batch % par.dp:
        raise ValueError(f"--dp {par.dp} does not divide the batch ({batch})")
    experts = getattr(model, "experts", 0)
    if par.ep > 1 and (not experts or par.ep != par.dp or par.ep > experts):
        raise ValueError(f"--ep {par.ep}: expert parallelism spreads the experts of a MoE model "
                         f"over the data-parallel replicas: it needs a MoE model, --ep equal "
                         f"to --dp, and at most its {experts} experts")
    if (batch // par.dp) % par.micro:
        raise ValueError(f"--micro-batches {par.micro} does not divide the batch per replica "
                         f"({batch // par.dp})")


def stage_layers(model, par: Parallel, stage: int, layers_mapped: int | None) -> range:  # noqa: ANN001
    per = -(-model.layers // par.pp)
    first = stage * per
    count = min(per, model.layers - first)
    if layers_mapped is not None:
        count = min(count, layers_mapped)
    return range(first, first + count)


def map_system(model, chips: list[ChipConfig], phase: Phase, par: Parallel,  # noqa: ANN001
               opts: MapOptions | None = None, confirm: Confirm | None = None,
               inputs: dict[str, np.ndarray] | None = None) -> SystemMapping:
    """Programs for every (chip, core). Functional mode shards one set of full-model weights,
    so a split model computes what the single chip computes."""
    opts = opts or MapOptions()
    check_parallel(model, par, len(chips), phase.batch)
    if getattr(model, "experts", 0) and opts.functional:
        raise ValueError(f"{model.name}: mixture-of-experts layers run in performance mode "
                         f"only (uniform routing; functional routing is not modelled)")
    if opts.functional and par.micro > 1:
        raise ValueError("functional mode runs one micro-batch (each would need its own KV "
                         "caches)")
    replica = replace(phase, batch=phase.batch // par.dp // par.micro)
    if par.cp > 1:  # context rank x prefills chunk x of each prompt, after x chunks cached
        if phase.kind != "prefill" or phase.seq % par.cp:
            raise ValueError(f"--cp {par.cp}: context parallelism splits a prefill whose "
                             f"--seq it divides (got {phase.kind}, seq {phase.seq})")
        if opts.functional:
            raise ValueError("--cp: context parallelism runs in performance mode only")
    if par.sp and opts.functional:
        raise ValueError("--sp: sequence parallelism runs in performance mode only")
    full_w = None
    if opts.functional:
        full = build_layers(model, replica, model.layers)
        full_w = init_weights(full, opts.seed)
        add_rope_tables(full, full_w, replica.batch)
    programs: dict[tuple[int, int], Program] = {}
    addresses: dict[int, dict[str, int]] = {}
    kernels: list[dict[tuple[int, int], Program]] = []
    limit = None if opts.functional else opts.layers_mapped
    aliases: dict[int, dict[int, int]] = {}  # chip -> the groups its shared programs mean
    done: dict[tuple, tuple] = {}  # performance mode: (graph, its lowering) by what decides it
    graphs: dict[int, object] = {}
    done_kernels: dict[int, list] = {}
    for d in range(par.rows):
        mine = replica if par.cp == 1 else Phase(
            "chunk", replica.batch, seq=phase.seq // par.cp, ctx=d % par.cp * phase.seq // par.cp)
        for s in range(par.pp):
            layers = stage_layers(model, par, s, limit)
            for r in range(par.tp):
                c = chip_of(par, d, s, r)
                shard = shard_of(par, d, s, r)
                # ranks after the first of a group build the same graph (only rank 0 adds a
                # row-parallel bias); their chips are alike too: lower it once
                # and replicas differ only in their group numbers: relabelled, not lowered
                same = (s, min(r, 1), d % par.cp, repr(chips[c]))
                if full_w is None and same in done:
                    g, low, was = done[same]
                    alias = {a: b for a, b in ((was.group, shard.group),
                                               (was.ep_group, shard.ep_group),
                                               (was.cp_group, shard.cp_group)) if a != b}
                    if alias:
                        aliases[c] = alias
                    _place(low, g, par, c, s, layers, shard, programs, addresses, kernels)
                    graphs[c], done_kernels[c] = g, low.kernels
                    continue
                g = build_layers(model, mine, len(layers), shard=shard, first=layers[0])
                w = shard_weights(full_w, g, model, par.tp, r) if full_w is not None else None
                g, w, _ = apply_passes(g, w, opts)
                x_in = f"x{layers[0]}"
                ins = dict(inputs or {}) if s == 0 else {}
                if opts.functional and s == 0 and x_in not in ins:
                    ins[x_in] = np.random.default_rng(opts.seed + 1).standard_normal(
                        g.tensors[x_in].shape)
                low = lower(g, chips[c], w, ins if opts.functional else None,
                            confirm if opts.confirm_top > 1 else None, opts.confirm_top,
                            opts.layout, barrier_group=shard.group)
                if full_w is None:
                    done[same] = (g, low, shard)
                _place(low, g, par, c, s, layers, shard, programs, addresses, kernels)
                graphs[c], done_kernels[c] = g, low.kernels
    per_stage = len(stage_layers(model, par, 0, None))
    factor = per_stage / len(stage_layers(model, par, 0, limit))
    first = min(graphs) if graphs else None
    return SystemMapping(programs, groups_of(par), addresses, factor, full_w,
                         dict(inputs or {}), kernels, graphs,
                         [n for n, _ in done_kernels.get(first, [])], aliases)


def _place(low, g, par: Parallel, c: int, s: int, layers: range, shard: Shard,  # noqa: ANN001
           programs: dict, addresses: dict, kernels: list) -> None:
    """Chip ``c``'s lowered layer into the system's programs (and kernels, when pp == 1)."""
    addresses[c] = low.addresses
    progs = _with_stage_io(low.programs, g, low.addresses, par, c, s, layers, shard.group)
    progs = {core: _repeat(p, par.micro) for core, p in progs.items()}
    if par.pp == 1 and par.micro == 1:
        for k, kernel in enumerate(low.kernel_programs):
            if k == len(kernels):
                kernels.append({})
            kernels[k].update({(c, core): p for core, p in kernel.items()})
    programs.update({(c, core): p for core, p in progs.items()})


def _with_stage_io(progs: dict[int, Program], g, addr: dict[str, int],  # noqa: ANN001
                   par: Parallel, me: int, stage: int, layers: range, group: int
                   ) -> dict[int, Program]:
    """Core 0 of chip ``me`` receives its input from the same tensor rank of the previous
    stage and sends its output to the same rank of the next; the other cores wait at a
    chip barrier."""
    if par.pp == 1:
        return progs
    out: dict[int, Program] = {}
    x_in, x_out = f"x{layers[0]}", f"x{layers[-1] + 1}"
    nbytes = g.tensors[x_in].nbytes
    for core, prog in progs.items():
        head, tail = [], []
        if core == 0:
            if stage > 0:
                head = [build("net.recv", me - par.tp, MemRef(Space.HBM, addr[x_in]), nbytes,
                              stage)]
            if stage < par.pp - 1:
                tail = [build("net.send", me + par.tp, MemRef(Space.HBM, addr[x_out]), nbytes,
                              stage + 1)]
        sync = (build("barrier"), build("net.barrier", group), build("barrier"))
        body = _shift(prog.instructions[:-1], len(head) + len(sync))
        out[core] = Program(tuple(head) + sync + body + tuple(tail) + (build("halt"),),
                            prog.data)
    return out


def _repeat(prog: Program, times: int) -> Program:
    """The program run ``times`` times in a row (one micro-batch after another)."""
    if times == 1:
        return prog
    body = prog.instructions[:-1]  # without its halt
    parts: list = []
    for i in range(times):
        parts += _shift(body, i * len(body))
    return Program(tuple(parts) + (build("halt"),), prog.data)


def _shift(instructions: tuple, by: int) -> tuple:
    """Move loop targets when instructions are inserted in front of a program."""
    out = []
    for ins in instructions:
        if ins.mnemonic == "loop":
            args = list(ins.args)
            args[ins.spec.index("end")] += by
            ins = type(ins)(ins.opcode, tuple(args))
        out.append(ins)
    return tuple(out)


def shard_weights(full: dict[str, np.ndarray], g, model, tp: int, rank: int  # noqa: ANN001
                  ) -> dict[str, np.ndarray]:
    """This rank's slices of the full weights (Megatron): QKV and gate/up by output columns
    (head by head), the output and down projections by input rows; the rest replicated."""
    hd, qh, f = model.head_dim, model.heads // tp, model.ffn // tp
    kvh = local_kv_heads(model, tp)
    first_kv = rank * qh // (model.heads // model.kv_heads)  # the KV head of our queries
    q_all, kv_all = model.heads * hd, model.kv_heads * hd
    out = {}
    for name in g.tensors:
        if name not in full:
            continue
        w = full[name]
        short = name.split(".", 1)[1] if "." in name else name
        if short in ("qkv.w", "qkv.b"):
            kv = np.arange(first_kv * hd, (first_kv + kvh) * hd)
            cols = np.concatenate([np.arange(rank * qh * hd, (rank + 1) * qh * hd),
                                   q_all + kv, q_all + kv_all + kv])
            w = w[..., cols]
        elif short in ("gate_up.w", "gate_up.b"):
            cols = np.concatenate([np.arange(rank * f, (rank + 1) * f),
                                   model.ffn + np.arange(rank * f, (rank + 1) * f)])
            w = w[..., cols]
        elif short in ("up.w", "up.b"):
            w = w[..., rank * f:(rank + 1) * f]
        elif short == "o.w":
            w = w[rank * qh * hd:(rank + 1) * qh * hd]
        elif short == "down.w":
            w = w[rank * f:(rank + 1) * f]
        out[name] = w
    return out
