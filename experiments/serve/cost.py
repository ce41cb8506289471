"""What one serving iteration costs on a replica, from simulated kernels at grid points.

An iteration of a continuous batch (``experiments.iteration``) is, per layer, the kernels
every token shares (norms, projections, MLP: they depend on the token count T only), each
prefill chunk's and the decode group's own KV append and attention, and, on a
tensor-parallel replica, two all-reduces of T rows; then the head for every sequence. A
serving run meets thousands of distinct (T, chunk, context, batch) values, so each part is
simulated at grid points, each kernel once (the kernel-cost cache), and read between them
by linear interpolation:

* shared(T) and the all-reduces: T on a half-octave grid (1, 2, 3, 4, 6, 8, 11, 16, ...)
  to 128, then every 32, 64 and 128 tokens to 512, 1024 and 4096 (a GEMM's row tiles and
  waves step there);
* a prefill chunk of t tokens after p cached: t on that grid x p on 0 and powers of two;
* the decode group of n sequences at mean context c: n on that grid x c on
  powers of two (attention's work grows linearly with c between them);
* the head of n sequences: n on that grid.

At grid points the figure is the simulated one; between them it is a chord of a curve that
is piecewise linear with tile-quantization steps. ``tests/experiments/test_serve_cost.py``
bounds the difference against pricing the iteration exactly at off-grid points. The decode
group is priced at its mean context (one attention call over the group, as serving engines
batch it); its bytes are exact, the balance of unequal contexts over cores is not modelled.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field, replace

from hardware.chip import ChipConfig
from hardware.system import SystemConfig
from mapper.layers import Phase, Shard, build_head, build_iteration, local_kv_heads
from mapper.ops import VIEWS, Op
from mapper.passes import apply_passes
from mapper.pipeline import MapOptions

SEGMENT_OPS = (Op.KV_APPEND, Op.ATTENTION)


def half_octaves(top: int) -> list[int]:
    """1, 2, 3, 4, 6, 8, 11, 16, 23, 32, ... up to and including the first >= top."""
    out, k = [1], 2
    while out[-1] < top:
        v = round(2 ** (k / 2))
        if v > out[-1]:
            out.append(v)
        k += 1
    return out


def token_grid(top: int) -> list[int]:
    """Token counts priced: half-octaves to 128, then every 32 to 512, every 64 to 1024 and
    every 128 to 4096 (a GEMM's row tiles and waves make steps there that a coarser chord
    would cut), half-octaves above."""
    out = [v for v in half_octaves(128)]
    out += list(range(160, 513, 32)) + list(range(576, 1025, 64)) + list(range(1152, 4097, 128))
    out += [v for v in half_octaves(max(top, 8192)) if v > 4096]
    return out


def octaves(top: int, zero: bool = False) -> list[int]:
    out = [0] if zero else []
    v = 1
    while True:
        out.append(v)
        if v >= top:
            return out
        v *= 2


def _bracket(grid: list[int], x: float) -> tuple[int, int, float]:
    """Grid neighbours (lo, hi) of x and x's weight on hi."""
    i = bisect.bisect_left(grid, x)
    if i < len(grid) and grid[i] == x:
        return grid[i], grid[i], 0.0
    if i == 0:
        return grid[0], grid[0], 0.0
    lo, hi = grid[i - 1], grid[i]
    return lo, hi, (x - lo) / (hi - lo)


class Price:
    """Time and energy of some kernels (per replica: energy of all its chips). A plain
    class with slots: an iteration's price adds a dozen of them, thousands of times a
    second."""

    __slots__ = ("time_s", "energy_j")

    def __init__(self, time_s: float = 0.0, energy_j: float = 0.0) -> None:
        self.time_s, self.energy_j = time_s, energy_j

    def __add__(self, o: Price) -> Price:
        return Price(self.time_s + o.time_s, self.energy_j + o.energy_j)

    def __mul__(self, k: float) -> Price:
        return Price(self.time_s * k, self.energy_j * k)

    __rmul__ = __mul__

    def __eq__(self, o: object) -> bool:
        return isinstance(o, Price) and (self.time_s, self.energy_j) == (o.time_s, o.energy_j)

    def __repr__(self) -> str:
        return f"Price(time_s={self.time_s!r}, energy_j={self.energy_j!r})"


def _lerp(a: Price, b: Price, w: float) -> Price:
    if not w:
        return a
    return Price(a.time_s + (b.time_s - a.time_s) * w, a.energy_j + (b.energy_j - a.energy_j) * w)


@dataclass
class IterationModel:
    """Prices iterations of ``model`` on a replica: one chip, or ``tp`` chips of ``system``."""

    model: object
    chip: ChipConfig
    opts: MapOptions = field(default_factory=MapOptions)
    system: SystemConfig | None = None
    tp: int = 1
    pp: int = 1  # pipeline stages: each holds layers / pp; activations hop between them
    _memo: dict = field(default_factory=dict, repr=False)
    points: int = 0  # grid points priced (each simulated once, or read from the cache)
    simulated: int = 0  # of which simulated in this process (not in the cache)
    notify: object = None  # called once, before the first grid point is simulated

    def __post_init__(self) -> None:
        if (self.tp > 1 or self.pp > 1) and self.system is None:
            raise ValueError("a tensor- or pipeline-parallel replica needs a system")
        self._grid = token_grid(1 << 17)
        self._ctx = octaves(1 << 20)
        self._past = octaves(1 << 20, zero=True)

    # -- the parts, each at a grid point ------------------------------------------------
    def _get(self, key: tuple, make) -> Price:  # noqa: ANN001
        """A grid point's price: this process's memory, the kernel-cost cache on disk
        (keyed by the model, chip, options, split and code, as a kernel is), or priced."""
        if key not in self._memo:
            import json

            from simulator import cache

            store = cache.current()
            k = "serve:" + self._digest(key)
            text = store.get_text(k) if store is not None else None
            if text is not None:
                self._memo[key] = Price(*json.loads(text))
            else:
                if not self.simulated and callable(self.notify):
                    self.notify()
                self.simulated += 1
                self._memo[key] = make()
                if store is not None:
                    store.put_text(k, json.dumps([self._memo[key].time_s,
                                                  self._memo[key].energy_j]))
            self.points += 1
        return self._memo[key]

    def _digest(self, key: tuple) -> str:
        import hashlib

        from simulator import cache

        if not hasattr(self, "_base"):
            code = cache.code_digest((*cache.CODE, "mapper", "experiments"))
            self._base = repr((self.model, self.chip, self.opts, self.system, self.tp,
                               self.pp, code))
        return hashlib.blake2b((self._base + repr(key)).encode(), digest_size=20).hexdigest()

    def _graph(self, seg: Phase):  # noqa: ANN202
        g = build_iteration(self.model, [seg], 1, shard=Shard(self.tp, 0, 1))
        return apply_passes(g, None, replace(self.opts, functional=False))[0]

    def _nodes(self, seg: Phase, segment: bool) -> Price:
        from experiments.iteration import node_cost

        g = self._graph(seg)
        total = Price()
        for n in g.nodes:
            if n.op in VIEWS or n.op == Op.ALLREDUCE or (n.op in SEGMENT_OPS) != segment:
                continue
            r = node_cost(g, n, self.chip)
            total = total + Price(r.time_s, r.energy_total_j * self.tp)
        return total

    def _at(self, key: tuple) -> Price:
        """A grid point by key (the hot path: a dictionary look-up once priced)."""
        p = self._memo.get(key)
        return p if p is not None else self._get(key, lambda: self._make(key))

    def _make(self, key: tuple) -> Price:
        kind = key[0]
        if kind == "shared":
            return self._nodes(Phase("prefill", 1, seq=key[1]), False)
        if kind == "allreduce":
            return self._allreduce(key[1])
        if kind == "chunk":
            t, p = key[1], key[2]
            return self._nodes(Phase("chunk" if p else "prefill", 1, seq=t, ctx=p), True)
        if kind == "decode":
            return self._nodes(Phase("decode", key[1], ctx=key[2]), True)
        if kind == "hop":
            return KVTransfer(self.system, self.tp)(0, 1, key[1])
        return self._head(key[1])

    def hop(self, tokens: int) -> Price:
        """Activations of ``tokens`` rows from one pipeline stage to the next (bf16, each
        rank its share), simulated on the system's links."""
        lo, hi, w = _bracket(self._grid, tokens)
        size = 2 * self.model.hidden
        return _lerp(self._at(("hop", lo * size)), self._at(("hop", hi * size)), w)

    def shared(self, tokens: int) -> Price:
        lo, hi, w = _bracket(self._grid, tokens)
        return _lerp(self._at(("shared", lo)), self._at(("shared", hi)), w)

    def allreduce(self, tokens: int) -> Price:
        """The layer's all-reduces of ``tokens`` rows (two per layer: o and down)."""
        if self.tp == 1:
            return Price()
        lo, hi, w = _bracket(self._grid, tokens)
        return _lerp(self._at(("allreduce", lo)), self._at(("allreduce", hi)), w)

    def _allreduce(self, tokens: int) -> Price:
        from experiments.train.costs import collective_cost, first_chips

        group = first_chips(self.system, self.tp)
        c = collective_cost(group, "allreduce", list(range(self.tp)),
                            2.0 * tokens * self.model.hidden)
        return Price(c.time_s, c.energy_j * self.tp) * 2

    def chunk(self, tokens: int, past: int) -> Price:
        """One prefill chunk's own kernels (KV append, attention)."""
        t0, t1, wt = _bracket(self._grid, tokens)
        p0, p1, wp = _bracket(self._past, past)
        at = self._at
        return _lerp(_lerp(at(("chunk", t0, p0)), at(("chunk", t0, p1)), wp),
                     _lerp(at(("chunk", t1, p0)), at(("chunk", t1, p1)), wp), wt)

    def decode(self, batch: int, ctx: float) -> Price:
        """The decode group's own kernels: ``batch`` sequences at mean context ``ctx``."""
        n0, n1, wn = _bracket(self._grid, batch)
        c0, c1, wc = _bracket(self._ctx, max(1.0, ctx))
        at = self._at
        return _lerp(_lerp(at(("decode", n0, c0)), at(("decode", n0, c1)), wc),
                     _lerp(at(("decode", n1, c0)), at(("decode", n1, c1)), wc), wn)

    def head(self, sequences: int) -> Price:
        lo, hi, w = _bracket(self._grid, sequences)
        return _lerp(self._at(("head", lo)), self._at(("head", hi)), w)

    def _head(self, n: int) -> Price:
        from experiments.iteration import node_cost

        g = build_head(self.model, Phase("decode", n), tp=self.tp)  # vocabulary-parallel
        total = Price()
        for node in g.nodes:
            if node.op == Op.ALLGATHER:  # the logits' parts, gathered over the group
                from experiments.train.costs import collective_cost, first_chips

                t = g.tensors[node.outputs[0]]
                c = collective_cost(first_chips(self.system, self.tp), "allgather",
                                    list(range(self.tp)), t.nbytes)
                total = total + Price(c.time_s, c.energy_j * self.tp)
            elif node.op not in VIEWS:
                r = node_cost(g, node, self.chip, confirm=False)
                total = total + Price(r.time_s, r.energy_total_j * self.tp)
        return total

    # -- an iteration --------------------------------------------------------------------
    def price(self, prefill: list[tuple[int, int]], decode: list[int]) -> Price:
        """Prefill chunks as (tokens, past) and decode sequences by context: the iteration's
        time and the replica's energy for it."""
        tokens = sum(t for t, _ in prefill) + len(decode)
        if tokens == 0:
            raise ValueError("an iteration needs at least one sequence")
        layer = self.shared(tokens) + self.allreduce(tokens)
        for t, p in prefill:
            layer = layer + self.chunk(t, p)
        if decode:
            layer = layer + self.decode(len(decode), sum(decode) / len(decode))
        total = layer * self.model.layers + self.head(len(prefill) + len(decode))
        if self.pp > 1:
            total = total + self.hop(tokens) * (self.pp - 1)
        return total

    # -- memory --------------------------------------------------------------------------
    def kv_bytes_per_token(self) -> int:
        """KV cache bytes one token holds on each chip of the replica (bf16, the layers of
        its pipeline stage)."""
        m = self.model
        if m.mla:  # one latent + rotary key per token, whole on every tensor rank
            return math.ceil(m.layers / self.pp) * (m.kv_lora_rank + m.rope_dim) * 2
        return 2 * math.ceil(m.layers / self.pp) * local_kv_heads(m, self.tp) * m.head_dim * 2

    def kv_capacity_tokens(self, token_budget: int, utilization: float = 0.9) -> int:
        """Tokens of KV cache a chip holds: HBM x ``utilization`` less the weights, the
        activations of the largest iteration and the workspace (``mapper.footprint``)."""
        from mapper.footprint import footprint

        fp = footprint(self.model, Phase("prefill", 1, seq=token_budget), self.opts, tp=self.tp,
                       pp=self.pp)
        free = self.chip.hbm.capacity * utilization - fp.weights - fp.activations - fp.workspace
        return max(0, math.floor(free / self.kv_bytes_per_token()))

    def weight_bytes(self) -> int:
        from mapper.footprint import footprint

        return footprint(self.model, Phase("decode", 1, ctx=1), self.opts, tp=self.tp,
                         pp=self.pp).weights


@dataclass
class KVTransfer:
    """A sequence's KV cache from a prefill replica to a decode replica: each chip of the
    source sends its share to the same rank of the destination, all at once, simulated on
    the system's topology (``net.send`` / ``net.recv``). Priced at powers of two of the
    bytes and read between them (a transfer's time is latency + bytes / bandwidth)."""

    system: SystemConfig
    tp: int = 1
    _memo: dict = field(default_factory=dict, repr=False)

    def __call__(self, src: int, dst: int, nbytes: float) -> Price:
        b0, b1, w = _bracket(octaves(1 << 40), max(1.0, nbytes))
        return _lerp(self._at(src, dst, b0), self._at(src, dst, b1), w)

    def _at(self, src: int, dst: int, nbytes: int) -> Price:
        key = (src, dst, nbytes)
        if key not in self._memo:
            self._memo[key] = self._simulate(src, dst, nbytes)
        return self._memo[key]

    def _simulate(self, src: int, dst: int, nbytes: int) -> Price:
        from isa import MemRef, Program, Space, build
        from simulator.run import simulate_system

        share = max(1, nbytes // self.tp)
        piece = 1 << 30  # bytes per instruction (a 32-bit count)
        progs = {}
        for r in range(self.tp):
            a, b = src * self.tp + r, dst * self.tp + r
            sends, recvs, left, off = [], [], share, 0
            while left > 0:
                n = min(piece, left)
                sends.append(build("net.send", b, MemRef(Space.HBM, off), n, 0))
                recvs.append(build("net.recv", a, MemRef(Space.HBM, off), n, 0))
                left, off = left - n, off + n
            progs[(a, 0)] = Program((*sends, build("halt")))
            progs[(b, 0)] = Program((*recvs, build("halt")))
        r = simulate_system(self.system, progs)
        moving = sum(v for k, v in r.energy_j.items() if k != "static")
        return Price(r.time_s, moving)
