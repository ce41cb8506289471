"""Memory per chip of a run, computed before anything is mapped: does the work fit?

The figures come from the same graph the mapper lowers (one layer, this chip's shard, after
the quantization / sparsity / low-rank passes), so they use the tensors and data types the
mapper lays out in HBM:

* weights: every layer this chip holds (``ceil(layers / pp)``) + the token embedding
  (and learned position table) + the LM head unless tied; embedding and head are
  vocabulary-parallel (Megatron): each tensor-parallel rank holds vocab / tp rows of them;
* KV cache: the layer's cache tensors (batch / dp sequences x ``kv_len`` positions) x layers;
* activations: the tensors one layer produces (layers run one after another in inference,
  so one layer's worth is live; the mapper gives each its own address);
* workspace: the step's rotary table (one for all layers) and the head's hidden state,
  normed state and logits.

Everything is linear in the batch, so the largest batch that fits follows from two points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from isa.errors import TesseraError
from mapper.graph import Graph, Kind
from mapper.layers import Phase, Shard, build_head, build_layers

GB = 1e9


class MemoryFitError(TesseraError):
    """The work does not fit the chip's memory (the message gives the breakdown and fixes)."""


class ContextError(TesseraError):
    """A context longer than the model's positions, without the override."""


@dataclass(frozen=True)
class Footprint:
    """Bytes one chip holds during a phase (the busiest chip of a split)."""

    weights: int
    kv_cache: int
    activations: int
    workspace: int

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.activations + self.workspace

    def breakdown(self) -> str:
        return (f"weights {self.weights / GB:.2f} GB + KV cache {self.kv_cache / GB:.2f} GB + "
                f"activations {self.activations / GB:.2f} GB + workspace "
                f"{self.workspace / GB:.2f} GB")


TABLES = ("rope.table",)  # per-token tables of the step, one for all layers: workspace


def _bytes(g: Graph, *kinds: Kind) -> int:
    return sum(t.nbytes for t in g.tensors.values() if t.kind in kinds
               and not t.name.endswith(TABLES))


def _tables(g: Graph) -> int:
    return sum(t.nbytes for t in g.tensors.values() if t.name.endswith(TABLES))


def _layer_graph(model, phase: Phase, opts, tp: int, ep: int, quantized: bool) -> Graph:  # noqa: ANN001
    from mapper.passes import apply_passes

    g = build_layers(model, phase, 1, shard=Shard(tp, 0, 1, ep, 2 if ep > 1 else 0))
    o = replace(opts, functional=False, quant_layers=None)
    if not quantized:
        o = replace(o, quant=None, act_quant=None)
    return apply_passes(g, None, o)[0]


def _dense_correction(model, phase: Phase, opts, tp: int, ep: int) -> float:  # noqa: ANN001
    """Weight bytes the leading dense layers of a MoE model (DeepSeek's first 3) hold beyond
    the MoE layers the representative graph counts them as."""
    if not (model.experts and model.dense_layers) or 2 * model.dense_layers >= model.layers:
        return 0.0
    dense = replace(model, experts=0, experts_per_token=0, shared_experts=0, dense_layers=0)
    one = _bytes(_layer_graph(dense, phase, opts, tp, ep, bool(opts.quant)), Kind.WEIGHT)
    moe = _bytes(_layer_graph(model, phase, opts, tp, ep, bool(opts.quant)), Kind.WEIGHT)
    return (one - moe) * model.dense_layers


def footprint(model, phase: Phase, opts, tp: int = 1, pp: int = 1, dp: int = 1,  # noqa: ANN001
              ep: int = 1) -> Footprint:
    """The busiest chip's bytes for ``phase`` (whole batch; each replica takes batch / dp)."""
    replica = replace(phase, batch=max(1, phase.batch // dp))
    quant_n = (model.layers if opts.quant_layers is None
               else len({i for i in opts.quant_layers if 0 <= i < model.layers}))
    quant_n = quant_n if opts.quant else 0
    per_chip = math.ceil(model.layers / pp)
    graphs = []
    if quant_n:
        graphs.append((_layer_graph(model, replica, opts, tp, ep, True), quant_n))
    if quant_n < model.layers:
        graphs.append((_layer_graph(model, replica, opts, tp, ep, False),
                       model.layers - quant_n))
    weights = sum(_bytes(g, Kind.WEIGHT) * n for g, n in graphs) * per_chip / model.layers
    weights += _dense_correction(model, replica, opts, tp, ep) * per_chip / model.layers
    weights += model.mtp_layers * _bytes(graphs[-1][0], Kind.WEIGHT)  # MTP drafts: a layer
    kv = sum(_bytes(g, Kind.KV_CACHE) * n for g, n in graphs) * per_chip / model.layers
    acts = max(_bytes(g, Kind.ACTIVATION, Kind.INPUT) for g, _ in graphs)
    emb = 2 * -(-model.vocab // tp) * model.hidden  # vocabulary-parallel over the ranks
    if getattr(model.position, "value", model.position) == "learned":
        emb += 2 * model.max_seq * model.hidden
    head_g = build_head(model, replica, tp=tp)
    head_w = _bytes(head_g, Kind.WEIGHT)
    # the first stage holds the embedding, the last the head (a tied head needs its copy
    # there when the stages differ); with one stage one chip holds both
    tied = model.tied_embeddings
    if pp == 1:
        extra = emb + (0 if tied else head_w)
    else:
        extra = max(emb, head_w)
    workspace = _bytes(head_g, Kind.ACTIVATION, Kind.INPUT) + _tables(graphs[0][0])
    return Footprint(int(weights + extra), int(kv), acts, workspace)


def positions_needed(mode: str, seq: int, ctx: int, tokens: int) -> int:
    """Positions the longest sequence reaches in a ``tessera run`` mode."""
    return {"prefill": seq, "decode": ctx + 1}.get(mode, seq + tokens)


def check_context(model, mode: str, seq: int, ctx: int, tokens: int,  # noqa: ANN001
                  allow: bool = False) -> str | None:
    """A warning (RoPE models: positions past training are computable but untested), an
    error (a learned position table has no row for them, unless ``allow``), or None."""
    need = positions_needed(mode, seq, ctx, tokens)
    if need <= model.max_seq:
        return None
    what = (f"{model.name}: this run reaches position {need:,}, beyond the model's "
            f"{model.max_seq:,} (max_seq)")
    learned = getattr(model.position, "value", model.position) == "learned"
    if learned and not allow:
        raise ContextError(f"{what}; its learned position table has no rows past "
                           f"{model.max_seq:,}: shorten --seq/--ctx/--tokens, or pass "
                           f"--allow-long-context to price it anyway")
    return f"{what}; quality there is untested, the cost is simulated as asked"


def check_fit(model, phase: Phase, opts, capacity: int, where: str,  # noqa: ANN001
              tp: int = 1, pp: int = 1, dp: int = 1, ep: int = 1) -> Footprint:
    """The footprint, or a MemoryFitError naming the breakdown, the largest batch that fits
    at this context, and what to change."""
    fp = footprint(model, phase, opts, tp, pp, dp, ep)
    if fp.total <= capacity:
        return fp
    what = (f"{model.name} {phase.kind} (batch {phase.batch}, "
            + (f"seq {phase.seq})" if phase.kind == "prefill" else f"ctx {phase.ctx})"))
    fixes = "more chips (--system with --tp/--pp)"
    if not opts.quant:
        fixes += ", weight quantization (--quant int8 / int4)"
    best = largest_batch(model, phase, opts, capacity, tp, pp, dp, ep)
    if best:
        ctx_word = "seq" if phase.kind == "prefill" else "context"
        n = phase.seq if phase.kind == "prefill" else phase.ctx
        fixes = (f"the largest batch that fits at {ctx_word} {n:,} is {best}: use --batch "
                 f"{best} or less, or {fixes}")
    else:
        fixes = (f"not even batch {dp} fits: a shorter "
                 f"{'--seq' if phase.kind == 'prefill' else '--ctx'}, {fixes}")
    raise MemoryFitError(f"{what} needs {fp.total / GB:.2f} GB per chip, more than the "
                         f"{capacity / GB:.2f} GB of HBM of {where}: {fp.breakdown()}; {fixes}")


def largest_batch(model, phase: Phase, opts, capacity: int, tp: int = 1,  # noqa: ANN001
                  pp: int = 1, dp: int = 1, ep: int = 1) -> int:
    """The largest batch (a multiple of ``dp``) whose footprint fits, 0 if none does."""
    def total(b: int) -> int:
        return footprint(model, replace(phase, batch=b * dp), opts, tp, pp, dp, ep).total

    one, two = total(1), total(2)
    if one > capacity:
        return 0
    per = max(two - one, 1)
    b = max(1, (capacity - one) // per + 1)
    while b > 1 and total(b) > capacity:  # linear in b up to rounding of per-expert slots
        b -= 1
    return b * dp
