"""One training step priced from simulated kernels: ``tessera train`` and the API.

Per micro-batch, one layer's forward and backward kernels are simulated on one chip (or on
its tensor-parallel group, collectives included); a pipeline stage runs its layers' share;
the pipeline schedule is simulated over the stages (its bubble comes out); data-parallel
gradient reduction (all-reduce, or ZeRO's reduce-scatter + all-gather) is simulated on the
system's topology and overlapped with the last micro-batch's backward, bucket by bucket;
the optimizer is a simulated AdamW kernel over the chip's shard. Every figure is a sum of
simulated times and the counts stated here.

    step = pipeline(stage F, stage B) + exposed gradient sync + optimizer (+ ZeRO-3 gathers)
    exposed sync = max(sync - overlap, last bucket's sync), overlap = the backward of the
    last micro-batch before its last bucket is ready
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

from experiments.train.costs import (
    Cost,
    collective_cost,
    head_costs,
    layer_costs,
    optimizer_cost,
    param_tensors,
    pytorch_optimizer_cost,
)
from experiments.train.memory import (
    RECIPES,
    Memory,
    autograd_extra_bytes,
    model_states,
    saved_bytes,
)
from experiments.train.schedule import SCHEDULES, order, simulate_pipeline
from hardware.chip import ChipConfig
from hardware.system import SystemConfig
from isa import DType
from isa.errors import TesseraError
from mapper.backward import GradMode, training_graph
from mapper.layers import Phase, Shard

RECOMPUTE = ("none", "selective", "full")
BUCKET_BYTES = 25e6 * 4  # gradient buckets of 25 M fp32 elements (PyTorch DDP's 25 MB x 4)


class TrainError(TesseraError):
    """A training configuration that cannot run (named field), or does not fit."""


@dataclass(frozen=True)
class TrainSpec:
    micro_batch: int = 1
    seq: int = 2048
    global_batch: int = 0  # sequences per step (0: micro_batch x dp)
    tp: int = 1
    pp: int = 1
    dp: int = 1
    zero: int = 0
    sp: bool = False
    recompute: str = "none"
    schedule: str = "1f1b"
    virtual_stages: int = 1
    offload_optimizer: bool = False
    recipe: str = "megatron"  # megatron | pytorch (autocast: fp32 weights, fp32 loss)
    ep: int = 1  # expert parallel: each routed expert on one of ep replicas (ep divides dp)
    # the data-parallel gradient sync overlapped with the last backward, bucket by bucket
    # (False: after the backward, as Megatron-LM before --overlap-grad-reduce, 2023)
    overlap_grad: bool = True

    @property
    def chips(self) -> int:
        return self.tp * self.pp * self.dp

    @property
    def micro_batches(self) -> int:
        g = self.global_batch or self.micro_batch * self.dp
        return g // (self.micro_batch * self.dp)


@dataclass
class TrainReport:
    model: str
    target: str
    spec: TrainSpec
    step_s: float
    tokens_per_s: float
    mfu: float
    breakdown: dict[str, float]  # seconds: compute, bubble, exposed_comm, optimizer
    memory: Memory
    energy_j: float
    tokens: int
    stage_fwd_s: float
    stage_bwd_s: float
    comm_s: float
    timeline: object = field(default=None, repr=False)
    layer: object = field(default=None, repr=False)
    wall_s: float = 0.0
    sync_link_bytes: float = 0.0  # per chip per step: gradient sync and ZeRO-3 gathers

    def as_dict(self) -> dict:
        out = {"model": self.model, "target": self.target, "step_s": self.step_s,
               "tokens_per_s": self.tokens_per_s, "mfu": self.mfu, "energy_j": self.energy_j,
               "energy_per_token_j": self.energy_j / self.tokens if self.tokens else 0.0,
               "tokens": self.tokens, "stage_fwd_s": self.stage_fwd_s,
               "stage_bwd_s": self.stage_bwd_s, "grad_sync_s": self.comm_s,
               "sync_link_bytes_per_chip": self.sync_link_bytes,
               "peak_memory_bytes": self.memory.total}
        out.update({f"{k}_s": v for k, v in self.breakdown.items()})
        out.update(self.memory.as_dict())
        out.update({k: getattr(self.spec, k) for k in self.spec.__dataclass_fields__})
        return out


def check_spec(model, spec: TrainSpec, chips: int) -> None:  # noqa: ANN001
    def bad(field_: str, why: str) -> TrainError:
        return TrainError(f"--{field_.replace('_', '-')}: {why}")

    if model.mla and model.v_head_dim != model.head_dim:
        raise TrainError(f"{model.name}: training multi-head latent attention is modelled in "
                         f"DeepSeek's prefill form, which needs v_head_dim = head_dim")
    for name in ("micro_batch", "seq", "tp", "pp", "dp"):
        if getattr(spec, name) < 1:
            raise bad(name, f"must be at least 1, not {getattr(spec, name)}")
    if spec.chips != chips:
        raise bad("dp", f"--tp {spec.tp} x --pp {spec.pp} x --dp {spec.dp} = {spec.chips} "
                        f"chips, but the target has {chips}")
    if spec.zero not in (0, 1, 2, 3):
        raise bad("zero", f"stage {spec.zero} is not one of 0, 1, 2, 3")
    if spec.recompute not in RECOMPUTE:
        raise bad("recompute", f"'{spec.recompute}' is not one of {', '.join(RECOMPUTE)}")
    if spec.schedule not in SCHEDULES:
        raise bad("schedule", f"'{spec.schedule}' is not one of {', '.join(SCHEDULES)}")
    if spec.recipe not in RECIPES:
        raise bad("recipe", f"'{spec.recipe}' is not one of {', '.join(RECIPES)}")
    g = spec.global_batch or spec.micro_batch * spec.dp
    if g % (spec.micro_batch * spec.dp):
        raise bad("global_batch", f"{g} sequences is not a multiple of micro-batch "
                                  f"{spec.micro_batch} x dp {spec.dp}")
    for name in ("heads", "ffn"):
        if getattr(model, name) % spec.tp:
            raise bad("tp", f"{spec.tp} does not divide the {getattr(model, name)} {name} of "
                            f"{model.name}")
    stages = spec.pp * (spec.virtual_stages if spec.schedule == "interleaved" else 1)
    if model.layers < stages:
        raise bad("pp", f"{model.layers} layers cannot fill {stages} pipeline stages")
    if spec.schedule == "interleaved" and spec.micro_batches % spec.pp:
        raise bad("global_batch", f"interleaved 1F1B needs micro-batches per replica "
                                  f"({spec.micro_batches}) to be a multiple of --pp {spec.pp}")
    if spec.seq > model.max_seq:
        raise bad("seq", f"{spec.seq} tokens exceed the {model.max_seq} positions of "
                         f"{model.name}")
    if spec.ep < 1:
        raise bad("ep", f"must be at least 1, not {spec.ep}")
    if spec.ep > 1:
        if not model.experts:
            raise bad("ep", f"{model.name} has no experts to spread")
        if spec.dp % spec.ep or spec.ep > model.experts:
            raise bad("ep", f"{spec.ep} must divide --dp {spec.dp} (the experts are spread "
                            f"over ep of the data-parallel replicas) and be at most the "
                            f"{model.experts} experts")
        if spec.tp > 1 or spec.sp:
            raise bad("ep", "expert parallelism in training runs without --tp / --sp")
    if spec.sp and spec.tp > 1:
        if (spec.micro_batch * spec.seq) % spec.tp:
            raise bad("sp", f"{spec.micro_batch * spec.seq} tokens per micro-batch do not "
                            f"split into --tp {spec.tp} sequence shards")
        if model.mla or model.experts or getattr(model.arch, "value", model.arch) == "encoder":
            raise bad("sp", f"sequence parallelism covers dense pre-norm layers, not "
                            f"{model.name}'s")


INSTRUCTIONS_PER_TILE_STEP = 4  # a GEMM's 128 x 128 x 64 step: two loads, an mm, a wait
MAX_INSTRUCTIONS = 50_000_000  # as tessera run's budget


def largest_kernel_instructions(model, tokens: int, seq: int, tp: int = 1,  # noqa: ANN001
                                head: bool = True) -> float:
    """An estimate of the simulated instructions of a step's largest kernel: the widest
    GEMM (gate/up, QKV, or the LM head) or the causal attention backward, on one rank."""
    h = model.hidden
    widest = max(2 * model.ffn, model.vocab if head else 0, 3 * h) / tp
    gemm = tokens * widest * h / (128 * 128 * 64)
    attn = tokens * seq / 2 * model.heads / tp * model.head_dim / (64 * 64 * 128) * 10
    return INSTRUCTIONS_PER_TILE_STEP * max(gemm, attn)


def train_step(model, spec: TrainSpec, chip: ChipConfig,  # noqa: ANN001
               system: SystemConfig | None = None, target: str = "",
               max_instructions: int = MAX_INSTRUCTIONS) -> TrainReport:
    """Price one training step of ``model`` split as ``spec`` over ``system`` (or one chip);
    a step whose largest kernel is estimated over ``max_instructions`` is refused before
    anything is lowered."""
    t0 = time.perf_counter()
    chips = len(system.chips) if system is not None else 1
    check_spec(model, spec, chips)
    need = largest_kernel_instructions(model, spec.micro_batch * spec.seq, spec.seq, spec.tp)
    if need > max_instructions:
        raise TrainError(f"--max-instructions: the largest kernel of a micro-batch of "
                         f"{spec.micro_batch} x {spec.seq} tokens needs about {need:.3g} "
                         f"simulated instructions, over {max_instructions:,} (raise it, or "
                         f"use a smaller --micro-batch or more --tp)")
    recipe = RECIPES[spec.recipe]
    phase = Phase("prefill", spec.micro_batch, seq=spec.seq)
    # Megatron accumulates into fp32 main gradients in the wgrad GEMM; autocast writes each
    # parameter's fp32 .grad (one micro-batch per step in the measured runs)
    grads = GradMode(DType.FP32, spec.recipe == "megatron" or spec.micro_batches > 1)
    memory = step_memory(model, spec, chip)
    if memory.total > chip.hbm.capacity:
        raise TrainError(f"{model.name} does not fit {chip.name}: {memory.total / 1e9:.1f} GB "
                         f"per chip > {chip.hbm.capacity / 1e9:.1f} GB of HBM "
                         f"({memory.breakdown()})")
    layer = layer_costs(model, chip, phase, spec.tp, system, grads,
                        "eager" if spec.recipe == "pytorch" else "fused", spec.sp, spec.ep,
                        spec.pp)
    head = head_costs(model, chip, replace(phase, batch=spec.micro_batch), spec.recipe ==
                      "pytorch", grads) if spec.tp == 1 else _head_tp(model, chip, phase, spec,
                                                                       grads)
    v = spec.virtual_stages if spec.schedule == "interleaved" else 1
    per_stage = stage_layers(model.layers, spec.pp * v)
    extra = {"none": Cost(), "selective": layer.attention_fwd, "full": layer.fwd}[spec.recompute]
    f_stage = [layer.fwd * n for n in per_stage]
    b_stage = [(layer.bwd + extra) * n for n in per_stage]
    f_stage[-1] = f_stage[-1] + head.fwd
    b_stage[-1] = b_stage[-1] + head.bwd
    m = spec.micro_batches
    p2p = _p2p_s(model, spec, system)
    tl = simulate_pipeline(spec.schedule if spec.pp > 1 else "gpipe", spec.pp, m,
                           [c.time_s for c in f_stage], [c.time_s for c in b_stage], p2p, v)
    params = _params_per_chip(model, spec)
    comm, last_bucket, sync_bytes = _grad_sync(model, spec, system, params)
    overlap = b_stage[0].time_s * v - last_bucket
    exposed = max(comm - max(overlap, 0.0), min(comm, last_bucket)) if spec.overlap_grad \
        else comm
    opt_params = params / (spec.dp if spec.zero >= 1 else 1)
    if spec.offload_optimizer:
        opt = _offloaded(spec, system, opt_params, memory)
    elif spec.recipe == "pytorch" and chips == 1:  # torch.optim.AdamW(fused=True)
        opt = pytorch_optimizer_cost(chip, param_tensors(model), "fused")
    else:
        opt = optimizer_cost(chip, int(opt_params), recipe.weight_copy == 0)
    gathers, gather_bytes = _zero3_gathers(model, spec, system, params, layer)
    step = tl.step_s + exposed + opt.time_s + gathers
    busy = max(tl.busy_s)
    tokens = spec.micro_batch * m * spec.dp * spec.seq
    flops = _model_flops(model, spec.seq) * tokens
    mfu = flops / (step * chips * _peak(chip)) if step else 0.0
    # every stage's kernels on each of its tp chips, in every replica; the optimizer on every
    # chip; static power while a chip waits (bubble, exposed communication)
    compute = sum((f_stage[k] + b_stage[k]).energy_j for k in range(len(f_stage))) * m
    mean_busy = sum(tl.busy_s) / len(tl.busy_s)
    energy = compute * spec.tp * spec.dp + opt.energy_j * chips + \
        chip.energy.static_w * chips * max(0.0, step - opt.time_s - mean_busy)
    breakdown = {"compute": busy, "bubble": tl.bubble_s, "exposed_comm": exposed + gathers,
                 "optimizer": opt.time_s}
    return TrainReport(model.name, target or chip.name, spec, step, tokens / step, mfu,
                       breakdown, memory, energy, tokens, sum(c.time_s for c in f_stage) / len(
                           f_stage), sum(c.time_s for c in b_stage) / len(b_stage), comm, tl,
                       layer, time.perf_counter() - t0, sync_bytes + gather_bytes)


def _peak(chip: ChipConfig) -> float:
    """Dense bf16 FLOP/s of the chip at its clock (2 per MAC)."""
    a = chip.core.array
    return 2 * a.rows * a.cols * a.macs_per_pe.get(DType.BF16, 1) * chip.cores * chip.clock_hz


def _model_flops(model, seq: int) -> float:  # noqa: ANN001
    """Training FLOPs per token (forward + backward = 3 x forward): 6 per parameter a token
    uses (a MoE token visits only its routed experts: the active parameters) plus
    attention's 12 x layers x seq x hidden (causal: half of it), the convention of MFU
    (PaLM, Megatron)."""
    attn = 12 * model.layers * seq * model.heads * model.head_dim / 2
    return 6 * model.active_params + attn


def stage_layers(layers: int, stages: int) -> list[int]:
    """Layers per pipeline stage (model chunk): as even as they divide; the stages after
    the first take the extra ones (the first holds the embedding, the last the head), as
    Megatron's uneven pipeline splits do (DeepSeek-V3's 61 layers on 16 stages)."""
    base, extra = divmod(layers, stages)
    return [base + (1 if 0 < i <= extra else 0) for i in range(stages)]


def _deepest(model, spec: TrainSpec) -> int:  # noqa: ANN001
    """Layers on the device that holds the most: its pipeline chunks' sum."""
    chunks = stage_layers(model.layers, spec.pp * _chunks(spec))
    return max(sum(chunks[d::spec.pp]) for d in range(spec.pp))


def _params_per_chip(model, spec: TrainSpec) -> float:  # noqa: ANN001
    """The parameters of the largest stage on one tensor-parallel rank (the embedding on the
    first stage, the head on the last; one stage holds both when pp is 1), routed experts
    included (``ep`` of them divided among the expert-parallel ranks)."""
    layers = _deepest(model, spec) * model.params_per_layer
    emb = model.vocab * model.hidden
    head = 0 if model.tied_embeddings else model.vocab * model.hidden
    ends = emb + head if spec.pp == 1 else max(emb, head)
    return (layers + ends) / spec.tp - _expert_params(model, spec) * (1 - 1 / spec.ep)


def _expert_params(model, spec: TrainSpec) -> float:  # noqa: ANN001
    """Routed-expert parameters of one stage (all experts; a chip holds 1 / ep of them)."""
    if not model.experts:
        return 0.0
    mats = 3 if getattr(model.mlp, "value", model.mlp) == "swiglu" else 2
    moe = sum(model.is_moe(i) for i in range(model.layers)) / model.layers
    return _deepest(model, spec) * moe * mats * model.hidden * model.moe_ffn * model.experts


def step_memory(model, spec: TrainSpec, chip: ChipConfig) -> Memory:  # noqa: ANN001
    recipe = RECIPES[spec.recipe]
    params = _params_per_chip(model, spec)
    experts = _expert_params(model, spec) / spec.ep if spec.ep > 1 else 0.0
    w, g, o, host = model_states(params - experts, recipe, spec.zero, spec.dp,
                                 spec.offload_optimizer)
    if experts:  # an expert's states shard over the replicas that hold it: dp / ep
        w, g, o, host = (a + b for a, b in zip((w, g, o, host), model_states(
            experts, recipe, spec.zero, spec.dp // spec.ep, spec.offload_optimizer)))
    phase = Phase("prefill", spec.micro_batch, seq=spec.seq)
    graph = training_graph(model, phase, 1, shard=_shard(spec))
    per_layer = saved_bytes(graph)
    if spec.recipe == "pytorch":  # what autograd keeps of the composite ops, besides
        per_layer += autograd_extra_bytes(model, spec.micro_batch * spec.seq, spec.tp)
    x_bytes = graph.tensors["x0"].nbytes
    chunk_layers = max(stage_layers(model.layers, spec.pp * _chunks(spec)))
    in_flight = _in_flight(spec)  # model chunks whose activations one device keeps at once
    if spec.recompute == "full":
        acts = in_flight * chunk_layers * x_bytes + per_layer
    else:
        acts = in_flight * chunk_layers * per_layer
    tokens = spec.micro_batch * spec.seq
    # the bf16 logits and their gradient (the loss kernel writes it in place of a copy); under
    # autocast the loss runs on an fp32 copy whose fp32 gradient is then cast back: bf16
    # logits + fp32 copy + fp32 gradient alive at once (the bf16 gradient after the copy)
    per = 2 + 4 + 4 if spec.recipe == "pytorch" else 2 + 2
    logits = tokens * model.vocab / spec.tp * per
    workspace = 2 * tokens * max(model.ffn, model.hidden) / spec.tp * 2  # the widest transient
    return Memory(w, g, o, acts, logits, workspace, host)


def _chunks(spec: TrainSpec) -> int:
    return spec.virtual_stages if spec.schedule == "interleaved" and spec.pp > 1 else 1


def _in_flight(spec: TrainSpec) -> int:
    """The most (micro-batch, chunk) forwards device 0 has run whose backward has not: the
    schedule's own order (1F1B: p; GPipe: every micro-batch; interleaved: its warm-up + 1).
    Without a pipeline, micro-batches run one after another: 1."""
    if spec.pp == 1:
        return 1
    live = peak = 0
    for op in order(spec.schedule, spec.pp, spec.micro_batches, _chunks(spec), 0):
        live += 1 if op.kind == "F" else -1
        peak = max(peak, live)
    return peak


def _p2p_s(model, spec: TrainSpec, system: SystemConfig | None) -> float:  # noqa: ANN001
    if spec.pp == 1 or system is None:
        return 0.0
    nbytes = spec.micro_batch * spec.seq * model.hidden * 2 / (spec.tp if spec.sp else 1)
    return system.link.latency + nbytes / system.link.bandwidth


def _dp_group(spec: TrainSpec) -> list[int]:
    """Chips of the first data-parallel group: the same (stage, rank) in every replica."""
    return [d * spec.pp * spec.tp for d in range(spec.dp)]


def _shard(spec: TrainSpec) -> Shard:
    """Rank 0's shard: tensor group 1, the expert-parallel group 2."""
    return Shard(spec.tp, 0, 1, ep=spec.ep, ep_group=2 if spec.ep > 1 else 0, sp=spec.sp)


def _grad_sync(model, spec: TrainSpec, system, params: float  # noqa: ANN001
               ) -> tuple[float, float, float]:
    """(the step's gradient sync time, its last bucket's, link bytes per chip), simulated on
    the system. With expert parallelism the dense gradients are reduced over every replica
    and the experts' over the dp / ep replicas holding the same experts, one after the
    other."""
    if spec.dp == 1 or system is None:
        return 0.0, 0.0, 0.0
    experts = _expert_params(model, spec) / spec.ep if spec.ep > 1 else 0.0
    dense = _sync(spec, system, params - experts, _dp_group(spec))
    if not experts or spec.dp == spec.ep:
        return dense
    holders = _dp_group(spec)[::spec.ep]
    more = _sync(spec, system, experts, holders)
    return dense[0] + more[0], more[1], dense[2] + more[2]


def _sync(spec: TrainSpec, system, params: float, group: list[int]  # noqa: ANN001
          ) -> tuple[float, float, float]:
    if params <= 0 or len(group) < 2:
        return 0.0, 0.0, 0.0
    nbytes = params * 4  # fp32 gradients
    buckets = max(1, int(-(-nbytes // BUCKET_BYTES)))
    size = nbytes / buckets
    if spec.zero >= 1:  # reduce-scatter the gradients, all-gather the updated bf16 weights
        one = collective_cost(system, "reducescatter", group, size, DType.FP32)
        gather = collective_cost(system, "allgather", group, params * 2, DType.BF16)
        return (buckets * one.time_s + gather.time_s, one.time_s + gather.time_s,
                buckets * one.link_bytes + gather.link_bytes)
    one = collective_cost(system, "allreduce", group, size, DType.FP32)
    return buckets * one.time_s, one.time_s, buckets * one.link_bytes


def _zero3_gathers(model, spec: TrainSpec, system, params: float,  # noqa: ANN001
                   layer) -> tuple[float, float]:  # noqa: ANN001
    """ZeRO-3: each layer's weights all-gathered before its forward and again before its
    backward, prefetched one layer ahead: only what a layer's compute does not hide.
    (exposed time, link bytes per chip)."""
    if spec.zero < 3 or spec.dp == 1 or system is None:
        return 0.0, 0.0
    per_layer = model.params_per_layer / spec.tp * 2
    g = collective_cost(system, "allgather", _dp_group(spec), per_layer, DType.BF16)
    t = g.time_s
    layers = _deepest(model, spec)
    hidden_f = max(0.0, t - layer.fwd.time_s)
    hidden_b = max(0.0, t - layer.bwd.time_s)
    count = 2 * spec.micro_batches * layers + 1
    return spec.micro_batches * layers * (hidden_f + hidden_b) + t, count * g.link_bytes


HOST_FLOPS_PER_PARAM = 20  # AdamW's fp32 operations per parameter on the host (as the kernel)


def _offloaded(spec: TrainSpec, system, params: float, memory: Memory) -> Cost:  # noqa: ANN001
    """ZeRO-Offload: fp32 gradients down the host link, AdamW on the host (its DRAM
    bandwidth or its FLOP/s, shared by the chips of a host, whichever binds), the updated
    bf16 weights back up. Not overlapped with the backward (a bound, stated)."""
    from hardware.system import HostConfig

    host = system.host if system is not None else HostConfig()
    share = host.chips_per_host
    if memory.offloaded * share > host.memory:
        raise TrainError(f"--offload-optimizer: {memory.offloaded * share / 1e9:.0f} GB of "
                         f"optimizer states for the {share} chips of a host exceed its "
                         f"{host.memory / 1e9:.0f} GB")
    down, up = 4 * params / host.link, 2 * params / host.link
    step = max(28 * params / (host.bandwidth / share),
               HOST_FLOPS_PER_PARAM * params / (host.flops / share))
    return Cost(time_s=down + step + up)


def _head_tp(model, chip, phase, spec, grads):  # noqa: ANN001, ANN202
    """With tensor parallelism the vocabulary is split over the ranks (Megatron's parallel
    LM head): one rank's share of the head, priced as the head of a model with vocab / tp."""
    sub = replace(model, vocab=model.vocab // spec.tp)
    return head_costs(sub, chip, phase, spec.recipe == "pytorch", grads)


__all__ = ["RECOMPUTE", "TrainError", "TrainReport", "TrainSpec", "check_spec",
           "step_memory", "train_step"]
