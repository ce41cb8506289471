"""Price one serving iteration from kernel costs: the building block of a serving simulation.

An iteration of a continuous batch runs some prefill chunks (each ``tokens`` long, after
``past`` tokens already cached) and some decode steps (each at its context length). All
their tokens share every projection, norm and MLP; each group of alike sequences attends
over its own KV cache (``mapper.layers.build_iteration``). The iteration is the model's
layers x one such layer + the head (final norm and logits for each sequence).

Each kernel (graph node) is priced alone: a graph of that one node is lowered and simulated
once, and its cost is kept by the node's signature (op, attributes, the shapes and types of
what it reads and writes, the chip, the code), in memory and in the kernel-cost cache on
disk. A later iteration that needs the same kernel (the same number of tokens, the same
attention shape) looks it up. Kernels are separated by chip-wide syncs, so the sum is the
layer's cost up to where a kernel's data sits in HBM (the L2 reuse model sees address
spans); ``tests/experiments/test_iteration.py`` bounds the difference against lowering
and simulating the whole iteration at 2%.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field

from hardware.chip import ChipConfig
from mapper.graph import Graph, Kind, Node, Tensor
from mapper.layers import Phase, build_head, build_iteration
from mapper.lower import lower
from mapper.ops import VIEWS, Op
from mapper.passes import apply_passes
from mapper.pipeline import MapOptions
from simulator.result import SimResult, sequence
from simulator.run import simulate


@dataclass(frozen=True)
class Iteration:
    """What one iteration runs: prefill chunks as (tokens, past) and decode contexts."""

    prefill: tuple[tuple[int, int], ...] = ()
    decode: tuple[int, ...] = ()
    per_prompt: bool = False  # each prompt its own attention call (not alike ones batched)

    def segments(self) -> list[Phase]:
        """Alike sequences grouped: one Phase per (chunk length, past) or context; with
        ``per_prompt``, one Phase per prompt (as an engine that calls attention per prompt)."""
        groups = ([(chunk, 1) for chunk in sorted(self.prefill)] if self.per_prompt
                  else sorted(Counter(self.prefill).items()))
        out = [Phase("chunk" if past else "prefill", n, seq=tokens, ctx=past)
               for (tokens, past), n in groups]
        for ctx, n in sorted(Counter(self.decode).items()):
            out.append(Phase("decode", n, ctx=ctx))
        return out

    @property
    def sequences(self) -> int:
        return len(self.prefill) + len(self.decode)

    @property
    def tokens(self) -> int:
        return sum(t for t, _ in self.prefill) + len(self.decode)


@dataclass
class IterationCost:
    time_s: float
    energy_j: float
    layer: SimResult  # one layer of the iteration
    head: SimResult
    kernels: dict[str, float] = field(default_factory=dict)  # node -> seconds (one layer)


_NODES: dict[tuple, SimResult] = {}  # a node's identity -> cost, this process
_ITERATIONS: dict[tuple, IterationCost] = {}  # (model, chip, segments, options) -> cost
_CHIPS: dict[int, tuple[ChipConfig, str]] = {}  # id -> (the chip, kept alive; its repr)


_TOKENS: dict[int, tuple[object, int]] = {}  # id -> (the object, kept alive; its token)
_CANON: dict[object, int] = {}  # a model or options value -> its token


def _token(value: object) -> int:
    """A small integer standing for a model or options value in the keys below: equal
    values, one token. Hashing a model's or options' dataclass (enums and all) on every
    lookup was half of composing an iteration; this hashes each object once."""
    hit = _TOKENS.get(id(value))
    if hit is None or hit[0] is not value:
        hit = _TOKENS[id(value)] = (value, _CANON.setdefault(value, len(_CANON)))
    return hit[1]


def _chip_key(chip: ChipConfig) -> str:
    """A chip's description as text, computed once per chip object."""
    if id(chip) not in _CHIPS:
        _CHIPS[id(chip)] = (chip, repr(chip))
    return _CHIPS[id(chip)][1]


def price(model, chip: ChipConfig, it: Iteration,  # noqa: ANN001
          opts: MapOptions | None = None) -> IterationCost:
    """The iteration's time and energy, each kernel priced once and reused after. A new
    composition of segments met before is put together from their kernels without
    building its graph (``_compose``); otherwise the graph is built and priced whole."""
    opts = opts or MapOptions()
    if not it.sequences:
        raise ValueError("an iteration needs at least one sequence")
    segs = tuple(it.segments())
    key = (_token(model), _chip_key(chip), segs, _token(opts), it.per_prompt)
    if key not in _ITERATIONS:
        _ITERATIONS[key] = _compose(model, chip, it, segs, opts) or \
            _price(model, chip, it, opts)
    return _ITERATIONS[key]


# The kernels of an iteration's layer are of two kinds: shared by every token (norms,
# projections, MLP, the rotary embedding) and each segment's own (its slice, KV append,
# attention, placement; named l<i>.seg<k>.*). Their costs are kept apart, so a new mix of
# known segments with a known token count is a sum. Shared kernels depend on the token
# count only (the rotary embedding's first positions are addresses in its table, and
# timing never depends on an address); tests/experiments/test_iteration.py checks the
# composed sum against pricing the iteration's graph whole.
# The shared kernels come first in a layer's sum, so their sum in order is kept with them
# (``Shared.prefix``): the layer's totals add each segment's kernels to it in order, the
# very additions of summing every kernel (rates and utilizations, which are ratios, may
# round differently in the last digit).
_SHARED: dict[tuple, Shared] = {}  # (model, chip, opts, T, per prompt) -> shared kernels
_SEGMENT: dict[tuple, list] = {}  # (model, chip, opts, segment, per prompt) -> [(suffix, cost)]
_HEADS: dict[tuple, SimResult] = {}  # (model, chip, sequences) -> the head's cost


@dataclass(frozen=True)
class Shared:
    """An iteration's kernels shared by every token: their times by node, in layer order,
    and their costs summed in that order."""

    times: dict[str, float]
    prefix: SimResult | None  # None: no shared kernels


def _compose(model, chip: ChipConfig, it: Iteration, segs: tuple,  # noqa: ANN001
             opts: MapOptions) -> IterationCost | None:
    ck, m, o = _chip_key(chip), _token(model), _token(opts)
    shared = _SHARED.get((m, ck, o, it.tokens, it.per_prompt))
    parts = [_SEGMENT.get((m, ck, o, seg, it.per_prompt)) for seg in segs]
    head = _HEADS.get((m, ck, it.sequences))
    if shared is None or head is None or any(p is None for p in parts):
        return None
    own = [(f"l0.seg{k}.{suffix}", r) for k, p in enumerate(parts) for suffix, r in p]
    layer = sequence(([shared.prefix] if shared.prefix else []) + [r for _, r in own])
    kernels = dict(shared.times)
    kernels.update((n, r.time_s) for n, r in own)
    return IterationCost(model.layers * layer.time_s + head.time_s,
                         model.layers * layer.energy_total_j + head.energy_total_j,
                         layer, head, kernels)


def _price(model, chip: ChipConfig, it: Iteration, opts: MapOptions) -> IterationCost:  # noqa: ANN001
    segs = it.segments()
    graph = apply_passes(build_iteration(model, segs, 1, rope_each=it.per_prompt), None,
                         opts)[0]
    parts = {n.name: node_cost(graph, n, chip) for n in graph.nodes if n.op not in VIEWS}
    layer = sequence(list(parts.values()))
    head_g = build_head(model, Phase("decode", it.sequences))  # as tessera run maps it
    head = sequence([node_cost(head_g, n, chip, confirm=False) for n in head_g.nodes
                     if n.op not in VIEWS])
    ck = _chip_key(chip)
    mine: dict[int, list] = {}
    shared = []
    for name, r in parts.items():
        seg = _segment_of(name)
        if seg is None:
            shared.append((name, r))
        else:
            mine.setdefault(seg, []).append((name.split(".", 2)[2], r))
    if set(mine) == set(range(len(segs))):
        m, o = _token(model), _token(opts)
        _SHARED[(m, ck, o, it.tokens, it.per_prompt)] = Shared(
            {n: r.time_s for n, r in shared},
            sequence([r for _, r in shared]) if shared else None)
        for k, seg in enumerate(segs):
            _SEGMENT[(m, ck, o, seg, it.per_prompt)] = mine[k]
        _HEADS[(m, ck, it.sequences)] = head
    return IterationCost(model.layers * layer.time_s + head.time_s,
                         model.layers * layer.energy_total_j + head.energy_total_j,
                         layer, head, {k: r.time_s for k, r in parts.items()})


def _segment_of(name: str) -> int | None:
    """k of a node named l<i>.seg<k>.<what>; None for a shared node."""
    parts = name.split(".")
    if len(parts) > 2 and parts[1].startswith("seg") and parts[1][3:].isdigit():
        return int(parts[1][3:])
    return None


def full(model, chip: ChipConfig, it: Iteration,  # noqa: ANN001
         opts: MapOptions | None = None) -> SimResult:
    """One layer of the iteration lowered and simulated whole (the reference)."""
    from experiments.run import confirmer

    opts = opts or MapOptions()
    graph = apply_passes(build_iteration(model, it.segments(), 1, rope_each=it.per_prompt),
                         None, opts)[0]
    low = lower(graph, chip, confirm=confirmer(chip))
    return sequence([simulate(k, chip) for k in low.kernel_programs])


# How a node's tiling is chosen: (GEMM tilings confirmed by simulation, weight layout), as
# ``MapOptions.confirm_top`` and ``layout`` say; the default is the mapper's.
DEFAULT_LOWERING = (3, "auto")


def signature(graph: Graph, node: Node, chip: ChipConfig, confirm: bool = True,
              lowering: tuple[int, str] = DEFAULT_LOWERING) -> str:
    """What decides a node's cost: op, attributes, what it touches, the chip, whether its
    tiling is confirmed by simulation (and how), the code."""
    from simulator import cache

    text = repr((_identity(graph, node, chip, confirm, lowering),
                 cache.code_digest((*cache.CODE, "mapper"))))
    return hashlib.blake2b(text.encode(), digest_size=20).hexdigest()


def _identity(graph: Graph, node: Node, chip: ChipConfig, confirm: bool,
              lowering: tuple[int, str] = DEFAULT_LOWERING) -> tuple:
    """The node's cost-deciding facts as a hashable value (the in-memory key)."""
    names = [*node.inputs, *node.outputs, *_attr_tensors(node)]
    tensors = tuple((graph.tensors[n].shape, graph.tensors[n].dtype, graph.tensors[n].kind,
                     names.index(n)) for n in names)
    key = (node.op, _anonymous(node), tensors, _chip_key(chip), confirm)
    return key if lowering == DEFAULT_LOWERING else (*key, lowering)


def node_cost(graph: Graph, node: Node, chip: ChipConfig, confirm: bool = True,
              lowering: tuple[int, str] = DEFAULT_LOWERING) -> SimResult:
    """One node's kernel alone on the chip, from memory, the cache on disk, or simulated.
    ``lowering`` is (tilings confirmed, weight layout) as ``MapOptions`` names them."""
    from experiments.run import confirmer
    from simulator import cache

    ident = _identity(graph, node, chip, confirm, lowering)
    if ident in _NODES:
        return _NODES[ident]
    key = signature(graph, node, chip, confirm, lowering)
    store = cache.current()
    text = store.get_text("node:" + key) if store is not None else None
    if text is not None:
        result = cache.from_json(text)
    else:
        top, layout = lowering
        confirm_fn = confirmer(chip) if confirm and top > 1 else None
        low = lower(_alone(graph, node), chip, confirm=confirm_fn, top=top, layout=layout)
        result = sequence([simulate(k, chip) for k in low.kernel_programs])
        if store is not None:
            store.put_text("node:" + key, cache.to_json(result))
    _NODES[ident] = result
    return result


def _attr_tensors(node: Node) -> list[str]:
    from mapper.ops import TENSOR_ATTRS

    if node.op != Op.LINEAR:
        return []
    return [getattr(node.attrs, a) for a in TENSOR_ATTRS if getattr(node.attrs, a)]


def _anonymous(node: Node) -> object:
    """The attributes without tensor names (their shapes are in the signature)."""
    if node.op != Op.LINEAR:
        return node.attrs
    from dataclasses import replace

    from mapper.ops import TENSOR_ATTRS

    return replace(node.attrs, **{a: bool(getattr(node.attrs, a)) or None
                                  for a in TENSOR_ATTRS})


def _alone(graph: Graph, node: Node) -> Graph:
    """A graph of ``node`` alone: what it reads is there before it runs."""
    g = Graph()
    for name in (*node.inputs, *_attr_tensors(node)):
        t = graph.tensors[name]
        kind = t.kind if t.kind in (Kind.WEIGHT, Kind.KV_CACHE) else Kind.INPUT
        g.add(Tensor(t.name, t.shape, t.dtype, kind))
    for name in node.outputs:
        if name not in g.tensors:
            g.add(graph.tensors[name])
    g.nodes.append(node)
    return g
