"""Build the graph of transformer layers for a phase: prefill or decode with a KV cache.

Decoders (GPT, LLaMA) are pre-norm; encoders (BERT) post-norm. One layer is
norm -> QKV projection -> RoPE -> KV-cache append -> attention -> output projection
(+ residual) -> norm -> MLP (GELU, or SwiGLU with gate and up fused in one GEMM) (+ residual).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from isa.dtypes import DType
from mapper.graph import Graph, Kind, Tensor
from mapper.ops import Op


@dataclass(frozen=True)
class Phase:
    """What is run: ``prefill`` of ``seq`` tokens per sequence, or ``decode`` of one token per
    sequence against ``ctx`` cached tokens."""

    kind: str  # "prefill" | "decode" | "chunk" (a prefill chunk after ctx cached tokens)
    batch: int
    seq: int = 1
    ctx: int = 0

    @property
    def tokens(self) -> int:
        return self.batch * self.q_len

    @property
    def q_len(self) -> int:
        return 1 if self.kind == "decode" else self.seq

    @property
    def past(self) -> int:
        """Tokens already in the cache before this step."""
        return 0 if self.kind == "prefill" else self.ctx

    @property
    def kv_len(self) -> int:
        return self.past + self.q_len


def _enum(value: object) -> str:
    return getattr(value, "value", value)  # type: ignore[return-value]


@dataclass(frozen=True)
class Shard:
    """Tensor parallelism (Megatron): this chip's rank of ``tp`` and its all-reduce group."""

    tp: int = 1
    rank: int = 0
    group: int = 0
    ep: int = 1  # expert parallel: this chip holds experts / ep of every MoE layer
    ep_group: int = 0  # the chips exchanging tokens with all-to-all
    cp: int = 1  # context parallel: this chip prefills chunk cp_rank of each prompt
    cp_rank: int = 0
    cp_group: int = 0  # the chips exchanging their chunks' keys and values
    sp: bool = False  # Megatron sequence parallelism: norms and residuals on T / tp rows

    @property
    def seq_split(self) -> bool:
        return self.sp and self.tp > 1


def build_layers(model, phase: Phase, layers: int, dt: DType = DType.BF16,  # noqa: ANN001
                 shard: Shard = Shard(), first: int = 0) -> Graph:
    """Layers ``first .. first+layers-1`` of ``model`` for ``phase`` (input x{first}, output
    x{first+layers}), as this chip's tensor-parallel shard."""
    g = Graph()
    T = phase.tokens
    if shard.seq_split and T % shard.tp:
        raise ValueError(f"--sp: sequence parallelism splits the {T} tokens of a step over "
                         f"--tp {shard.tp} ranks; they must divide")
    rows = T // shard.tp if shard.seq_split else T
    g.add(Tensor(f"x{first}", (rows, model.hidden), dt, Kind.INPUT))
    kinds = _kinds(model, layers, first)
    for li in range(first, first + layers):
        _layer(g, model, phase, li, dt, shard, moe=kinds[li - first])
    return g


def _kinds(model, layers: int, first: int = 0) -> list[bool]:  # noqa: ANN001
    """Which built layers are MoE (``ModelConfig.priced_moe``; plain configs: all alike)."""
    if hasattr(model, "priced_moe"):
        return model.priced_moe(layers, first)
    return [bool(getattr(model, "experts", 0))] * layers


def check_shard(model, tp: int) -> None:  # noqa: ANN001
    """Megatron needs whole query heads and FFN slices per chip; KV heads are split, or
    replicated when there are fewer than chips (each chip keeps the one its queries use)."""
    for name in ("heads", "ffn"):
        if getattr(model, name) % tp:
            raise ValueError(f"tensor parallel degree {tp} does not divide {name} "
                             f"({getattr(model, name)}) of {model.name}")
    if model.kv_heads % tp and tp % model.kv_heads:
        raise ValueError(f"tensor parallel degree {tp} and the {model.kv_heads} KV heads of "
                         f"{model.name}: one must divide the other")


def local_kv_heads(model, tp: int) -> int:  # noqa: ANN001
    return max(1, model.kv_heads // tp)


def _w(g: Graph, name: str, shape: tuple[int, ...], dt: DType = DType.BF16) -> str:
    return g.add(Tensor(name, shape, dt, Kind.WEIGHT))


def _a(g: Graph, name: str, shape: tuple[int, ...], dt: DType) -> str:
    return g.add(Tensor(name, shape, dt))


def build_iteration(model, segments: list[Phase], layers: int = 1,  # noqa: ANN001
                    dt: DType = DType.BF16, shard: Shard = Shard(),
                    rope_each: bool = False) -> Graph:
    """Layers of one serving iteration: a continuous batch of ``segments`` (each a group of
    sequences alike: prefill chunks of ``seq`` tokens, or decode steps at context ``ctx``)
    whose tokens share every projection, norm and MLP, while each segment attends over its
    own KV cache. Performance mode only (one rotary table for all rows). ``rope_each``: the
    rotary embedding applied per segment, as an engine that loops over its prompts does."""
    if not segments:
        raise ValueError("an iteration needs at least one segment")
    g = Graph()
    T = sum(s.tokens for s in segments)
    g.add(Tensor("x0", (T, model.hidden), dt, Kind.INPUT))
    kinds = _kinds(model, layers)
    for li in range(layers):
        _layer(g, model, segments[0], li, dt, shard, segments, rope_each, moe=kinds[li])
    return g


def _layer(g: Graph, m, phase: Phase, li: int, dt: DType, shard: Shard,  # noqa: ANN001
           segments: list[Phase] | None = None, rope_each: bool = False,
           moe: bool = False) -> None:
    H, T = m.hidden, sum(s.tokens for s in segments) if segments else phase.tokens
    tp = shard.tp
    heads, kv_heads, ffn = m.heads // tp, local_kv_heads(m, tp), m.ffn // tp
    qd, kvd = heads * m.head_dim, kv_heads * m.head_dim
    p = f"l{li}."
    x = f"x{li}"
    pre = _enum(m.arch) != "encoder"
    norm = _enum(m.norm)
    f32 = DType.FP32
    bias = bool(m.bias)

    def norm_node(name: str, src: str, width: int = H, rows: int = 0) -> str:
        gamma = _w(g, p + name + ".w", (2 * width if norm == "layernorm" else width,), f32)
        out = _a(g, p + name + ".out", (rows or T, width), dt)
        g.op(Op.NORM, p + name, [src, gamma], [out], kind=norm, eps=float(m.norm_eps))
        return out

    def linear(name: str, src: str, k: int, n: int, row_parallel: bool = False,
               **epi) -> str:
        """Row-parallel projections of a shard: partial sums, all-reduced; the residual and
        the bias are added by rank 0 only, so the sum holds them once."""
        groups = epi.get("groups", 0)
        w = _w(g, p + name + ".w", (k, n // groups if groups else n))
        ins = [src, w]
        has_bias = bias and not (row_parallel and tp > 1 and shard.rank)
        if has_bias:
            ins.append(_w(g, p + name + ".b", (n,), f32))
        if row_parallel and shard.seq_split:  # partial sums, reduce-scattered to T / tp rows,
            epi.pop("residual", None)          # then the residual added on those rows
        if row_parallel and tp > 1 and "residual" in epi:
            # unfused (passes.unfuse), every rank adds it after the all-reduce
            epi["tp_residual"] = epi["residual"]
            if shard.rank:
                epi.pop("residual")
        out = _a(g, p + name + ".out", (T, n), dt)
        g.op(Op.LINEAR, p + name, ins, [out], bias=has_bias, **epi)
        if row_parallel and shard.seq_split:
            mine = _a(g, p + name + ".scattered", (T // tp, n), dt)
            g.op(Op.REDUCESCATTER, p + name + ".reducescatter", [out], [mine],
                 group=shard.group)
            summed = _a(g, p + name + ".sum", (T // tp, n), dt)
            g.op(Op.ADD, p + name + ".residual", [mine, residual_of[name]], [summed])
            return summed
        if row_parallel and tp > 1:
            g.op(Op.ALLREDUCE, p + name + ".allreduce", [out], [out], group=shard.group)
        return out

    def gather(name: str, local: str) -> str:
        """Sequence parallel: the T / tp rows of a norm's output gathered to all T."""
        if not shard.seq_split:
            return local
        full = _a(g, p + name + ".gathered", (T, H), dt)
        g.op(Op.ALLGATHER, p + name + ".allgather", [local], [full], group=shard.group)
        return full

    if shard.seq_split:  # what each row-parallel projection adds after its reduce-scatter
        if segments is not None or m.mla or not pre or m.experts:
            raise ValueError("--sp: sequence parallelism in inference covers dense pre-norm "
                             "attention layers (not serving iterations, MLA or MoE)")
        norm_rows = T // tp
        T_norm = norm_rows
    else:
        T_norm = T
    residual_of = {"o": x, "down": None}
    h = gather("norm1", norm_node("norm1", x, rows=T_norm)) if pre else x
    if m.mla:
        att, qd = _mla(g, m, phase, p, h, T, dt, tp, linear, norm_node, segments)
    else:
        att = _mha(g, m, phase, p, h, T, dt, qd, kvd, kv_heads, linear, segments, rope_each,
                   shard)
    x1 = linear("o", att, qd, H, row_parallel=True, residual=x)
    residual_of["down"] = x1
    if not pre:
        x1 = norm_node("norm1", x1)
    h2 = gather("norm2", norm_node("norm2", x1, rows=T_norm)) if pre else x1
    out_name = f"x{li + 1}"
    if moe:
        y = _moe(g, m, p, h2, x1, T, dt, shard, linear)
    elif _enum(m.mlp) == "swiglu":
        gu = linear("gate_up", h2, H, 2 * ffn)
        act = _a(g, p + "act", (T, ffn), dt)
        g.op(Op.SILU_MUL, p + "silu_mul", [gu], [act], ffn=ffn)
        y = linear("down", act, ffn, H, row_parallel=True, residual=x1)
    else:
        up = linear("up", h2, H, ffn, act="gelu")
        y = linear("down", up, ffn, H, row_parallel=True, residual=x1)
    if not pre:
        y = norm_node("norm2", y)
    g.op(Op.RENAME, p + "out", [y], [g.add(Tensor(out_name, (T_norm, H), dt))])


def _mha(g: Graph, m, phase: Phase, p: str, h: str, T: int, dt: DType, qd: int,  # noqa: ANN001
         kvd: int, kv_heads: int, linear, segments: list[Phase] | None,  # noqa: ANN001
         rope_each: bool, shard: Shard = Shard()) -> str:
    """Multi-/grouped-query attention: QKV projection, (qk-norm,) RoPE, cache, attention.
    Context parallel (``shard.cp``): this chip's chunk of each prompt appends its keys and
    values, the group all-gathers every chunk's (ring attention passes the same bytes),
    and its queries attend over the prefix up to their chunk."""
    qkv = linear("qkv", h, m.hidden, qd + 2 * kvd)
    if m.qk_norm:  # RMSNorm over each q and k head (Qwen3), in place
        for name, col0, cols in (("q_norm", 0, qd), ("k_norm", qd, kvd)):
            gamma = _w(g, p + name + ".w", (m.head_dim,), DType.FP32)
            g.op(Op.NORM, p + name, [qkv, gamma], [qkv], kind="rmsnorm",
                 eps=float(m.norm_eps), segment=m.head_dim, col0=col0, cols=cols)
    window = m.sliding_window
    rope = _enum(m.position) == "rope"
    rope_each = rope_each and rope and segments is not None and len(segments) > 1
    if rope and not rope_each:
        table = _w(g, p + "rope.table", (T, m.head_dim), DType.FP32)  # per token: cos | sin
        g.op(Op.ROPE, p + "rope", [qkv, table], [qkv], cols=qd + kvd, hd=m.head_dim,
             theta=float(m.rope_theta), pos0=phase.past, seq=phase.q_len)
    causal = _enum(m.arch) != "encoder"
    att = _a(g, p + "attn", (T, qd), dt)
    if segments is None or len(segments) == 1:
        kv_len = phase.kv_len
        if window and phase.kind == "decode" and kv_len > window:
            kv_len = window  # a ring of the last W keys: the new one replaces the oldest
        kc = g.add(Tensor(p + "k_cache", (phase.batch, kv_heads, kv_len, m.head_dim), dt,
                          Kind.KV_CACHE))
        vc = g.add(Tensor(p + "v_cache", (phase.batch, kv_heads, kv_len, m.head_dim), dt,
                          Kind.KV_CACHE))
        g.op(Op.KV_APPEND, p + "kv_append", [qkv], [kc, vc], q_dim=qd, kv_dim=kvd)
        if shard.cp > 1:
            every = _a(g, p + "kv_chunks", (shard.cp * T, 2 * kvd), dt)
            g.op(Op.ALLGATHER, p + "kv_allgather", [qkv], [every], group=shard.cp_group,
                 count=T * 2 * kvd)
        g.op(Op.ATTENTION, p + "attention", [qkv, kc, vc], [att], causal=causal, window=window)
    else:
        _segments(g, p, qkv, att, segments, kv_heads, m.head_dim, qd, kvd, dt, causal,
                  float(m.rope_theta) if rope_each else None, window)
    return att


def _segments(g: Graph, p: str, qkv: str, att: str, segments: list[Phase], kv_heads: int,
              hd: int, qd: int, kvd: int, dt: DType, causal: bool,
              theta: float | None = None, window: int = 0) -> None:
    """Each segment's rows of the QKV projection append to and attend over its own KV
    cache; its attention output is placed at its rows of the layer's. With ``theta``, each
    segment's rows are rotated on their own (its positions, its table)."""
    r0, cols = 0, g.tensors[qkv].shape[1]
    for i, s in enumerate(segments):
        q = p + f"seg{i}."
        rows = g.add(Tensor(q + "qkv", (s.tokens, cols), dt))
        g.op(Op.SLICE_ROWS, q + "take", [qkv], [rows], first=r0)
        if theta is not None:
            table = _w(g, q + "rope.table", (s.tokens, hd), DType.FP32)
            g.op(Op.ROPE, q + "rope", [rows, table], [rows], cols=qd + kvd, hd=hd,
                 theta=theta, pos0=s.past, seq=s.q_len)
        kc = g.add(Tensor(q + "k_cache", (s.batch, kv_heads, s.kv_len, hd), dt, Kind.KV_CACHE))
        vc = g.add(Tensor(q + "v_cache", (s.batch, kv_heads, s.kv_len, hd), dt, Kind.KV_CACHE))
        g.op(Op.KV_APPEND, q + "kv_append", [rows], [kc, vc], q_dim=qd, kv_dim=kvd)
        out = g.add(Tensor(q + "attn", (s.tokens, qd), dt))
        g.op(Op.ATTENTION, q + "attention", [rows, kc, vc], [out], causal=causal,
             window=window)
        g.op(Op.PLACE_ROWS, q + "put", [out], [att], first=r0)
        r0 += s.tokens


def _mla(g: Graph, m, phase: Phase, p: str, h: str, T: int, dt: DType, tp: int,  # noqa: ANN001
         linear, norm_node, segments: list[Phase] | None) -> tuple[str, int]:  # noqa: ANN001
    """Multi-head latent attention (DeepSeek-V2/V3) in its absorbed form, as FlashMLA runs
    it: the cache holds one latent (kv_lora_rank) and one rotary key (rope_dim) per token,
    shared by every head. Queries: h -> q_a -> norm -> the no-rotary part (head_dim per
    head) and the rotary part (rope_dim per head, RoPE); the no-rotary part is absorbed into
    the latent space by each head's W_UK (a batched GEMM over heads). Attention is then MQA
    over the latent cache, scores = q_lat . c + q_rope . k_rope, values = the latent; each
    head's output leaves latent space by its W_UV (batched) before the output projection.
    The down projections (q_a, kv_a, k_rope) are replicated on tensor-parallel ranks, the
    per-head ones split. Returns (attention output, its columns)."""
    H, nh = m.hidden, m.heads // tp
    dn, dr, dv, r = m.head_dim, m.rope_dim, m.v_head_dim, m.kv_lora_rank
    src, width = h, H
    if m.q_lora_rank:
        src = norm_node("q_norm", linear("q_a", h, H, m.q_lora_rank), m.q_lora_rank)
        width = m.q_lora_rank
    q_nope = linear("q_nope", src, width, nh * dn)
    q_rope = linear("q_rope", src, width, nh * dr)
    lat = norm_node("kv_norm", linear("kv_a", h, H, r), r)
    k_pe = linear("k_rope", h, H, dr)
    causal = True
    if phase.kind == "prefill" and not (segments and len(segments) > 1) and dv == dn:
        return _mla_prefill(g, m, phase, p, T, dt, nh, q_nope, q_rope, lat, k_pe, linear)
    q_lat = linear("q_absorb", q_nope, nh * dn, nh * r, groups=nh)  # W_UK per head
    o_lat = _a(g, p + "attn_latent", (T, nh * r), dt)
    segs = segments if segments and len(segments) > 1 else [phase]
    r0 = 0
    for i, s in enumerate(segs):
        q = p if len(segs) == 1 else p + f"seg{i}."
        parts = [q_lat, q_rope, k_pe, lat]
        if len(segs) > 1:  # this segment's rows of each
            parts = []
            for name in (q_lat, q_rope, k_pe, lat):
                part = g.add(Tensor(q + name[len(p):], (s.tokens, g.tensors[name].shape[1]),
                                    dt))
                g.op(Op.SLICE_ROWS, q + "take." + name[len(p):], [name], [part], first=r0)
                parts.append(part)
        ql, qr, kp, lt = parts
        cache = _mla_rope_and_cache(g, m, s, q, qr, kp, lt, nh, dt)
        out = o_lat if len(segs) == 1 else g.add(Tensor(q + "attn_latent", (s.tokens, nh * r),
                                                        dt))
        g.op(Op.ATTENTION, q + "attention", [ql, qr, cache], [out], causal=causal,
             rope_dim=dr, scale=1.0 / math.sqrt(dn + dr))
        if len(segs) > 1:
            g.op(Op.PLACE_ROWS, q + "put", [out], [o_lat], first=r0)
        r0 += s.tokens
    return linear("v_absorb", o_lat, nh * r, nh * dv, groups=nh), nh * dv  # W_UV per head


def _mla_rope_and_cache(g: Graph, m, s: Phase, p: str, q_rope: str, k_pe: str,  # noqa: ANN001
                        lat: str, nh: int, dt: DType) -> str:
    """RoPE on the rotary query parts and the shared rotary key (positions of ``s``), and
    the latent and rotary key appended to the cache (returned), in both MLA forms."""
    dr, r = m.rope_dim, m.kv_lora_rank
    table = _w(g, p + "rope.table", (s.tokens, dr), DType.FP32)
    for name, t, cols in (("rope_q", q_rope, nh * dr), ("rope_k", k_pe, dr)):
        g.op(Op.ROPE, p + name, [t, table], [t], cols=cols, hd=dr, theta=float(m.rope_theta),
             pos0=s.past, seq=s.q_len)
    cache = g.add(Tensor(p + "kv_cache", (s.batch, 1, s.kv_len, r + dr), dt, Kind.KV_CACHE))
    g.op(Op.KV_APPEND, p + "kv_append", [lat, k_pe], [cache], q_dim=0, kv_dim=r + dr,
         latent=True)
    return cache


def _mla_prefill(g: Graph, m, phase: Phase, p: str, T: int, dt: DType, nh: int,  # noqa: ANN001
                 q_nope: str, q_rope: str, lat: str, k_pe: str, linear) -> tuple[str, int]:  # noqa: ANN001
    """A prompt's MLA as DeepSeek's inference runs its prefill (the naive form): each
    head's keys and values decompressed from the latent by kv_b (the same weights W_UK and
    W_UV hold), MHA of head size head_dim + rope_dim over them with the rotary key shared,
    ~3.4x fewer attention FLOPs per key than attending in latent space; the latent and
    rotary key still fill the cache for the decode steps."""
    dn, dr, r = m.head_dim, m.rope_dim, m.kv_lora_rank
    _mla_rope_and_cache(g, m, phase, p, q_rope, k_pe, lat, nh, dt)
    kv = linear("kv_b", lat, r, nh * 2 * dn)  # per head: its no-rotary keys, its values
    att = _a(g, p + "attn", (T, nh * dn), dt)
    g.op(Op.ATTENTION, p + "attention", [q_nope, q_rope, kv, k_pe], [att], causal=True,
         rope_dim=dr, scale=1.0 / math.sqrt(dn + dr), batch=phase.batch, heads=nh)
    return att, nh * dn


def build_head(model, phase: Phase, dt: DType = DType.BF16, tp: int = 1,  # noqa: ANN001
               group: int = 0) -> Graph:
    """Final norm and logits for the last token of each sequence (what sampling needs).
    With ``tp`` ranks the head is vocabulary-parallel (Megatron): each holds and computes
    ``vocab / tp`` columns, and the logits are all-gathered over ``group``."""
    g = Graph()
    B, H = phase.batch, model.hidden
    g.add(Tensor("h", (B, H), dt, Kind.INPUT))
    norm = _enum(model.norm)
    gamma = _w(g, "final_norm.w", (2 * H if norm == "layernorm" else H,), DType.FP32)
    g.add(Tensor("h_norm", (B, H), dt))
    g.op(Op.NORM, "final_norm", ["h", gamma], ["h_norm"], kind=norm, eps=float(model.norm_eps))
    part = -(-model.vocab // tp)
    _w(g, "lm_head.w", (H, part))
    g.add(Tensor("logits", (B, part * tp), dt))
    if tp == 1:
        g.op(Op.LINEAR, "lm_head", ["h_norm", "lm_head.w"], ["logits"], bias=False)
        return g
    g.add(Tensor("logits.part", (B, part), dt))
    g.op(Op.LINEAR, "lm_head", ["h_norm", "lm_head.w"], ["logits.part"], bias=False)
    g.op(Op.ALLGATHER, "lm_head.allgather", ["logits.part"], ["logits"], group=group)
    return g


def _moe(g: Graph, m, p: str, h: str, residual: str, T: int, dt: DType,  # noqa: ANN001
         shard: Shard, linear) -> str:  # noqa: ANN001
    """A mixture-of-experts FFN on the busiest chip of its expert-parallel group: router;
    dispatch of each token's k copies to the chips holding their experts (all-to-all over
    the group); this chip's experts (SwiGLU) on the slots they receive under the routing of
    ``mapper.routing`` (skew, capacity); combine (all-to-all back); the sum of each token's
    expert outputs + the shared experts' output + residual. Every local expert's weights
    are in the graph (memory), whether or not a slot reaches it."""
    from mapper.routing import route

    H, E, k, ep = m.hidden, m.experts, m.experts_per_token, shard.ep
    F = m.moe_ffn or m.ffn
    r = route(T, k, E, ep, m.expert_skew, m.expert_load,
              m.capacity_factor)
    chip = r.busiest
    mine = [r.loads[e] for e in r.chip_experts(chip)]
    slots = T * k  # this chip's token copies, sent out and received back
    received = sum(mine)
    rows_x = max(slots, received)  # an exchange lasts as long as its larger side
    router_w = _w(g, p + "router.w", (H, E))
    logits = _a(g, p + "router.out", (T, E), dt)
    g.op(Op.LINEAR, p + "router", [h, router_w], [logits], bias=False)
    out_buf = _a(g, p + "moe.dispatch", (rows_x, H), dt)
    g.op(Op.REPLICATE_ROWS, p + "moe.copies", [h], [out_buf], copies=k)
    recv = _a(g, p + "moe.received", (rows_x, H), dt)
    if ep > 1:
        g.op(Op.ALLTOALL, p + "moe.dispatch", [out_buf], [recv], group=shard.ep_group, ep=ep)
    else:
        g.op(Op.RENAME, p + "moe.local", [out_buf], [recv])
    expert_out = _a(g, p + "moe.expert_out", (rows_x, H), dt)
    # this chip's experts as grouped GEMMs (one launch each, as MoE kernels run them): the
    # received slots sorted by expert, each expert's rows times its own weights
    gu_w = _w(g, p + "experts.gate_up.w", (len(mine) * H, 2 * F))
    dn_w = _w(g, p + "experts.down.w", (len(mine) * F, H))
    if received:
        rows = tuple(mine)
        xin = _a(g, p + "experts.in", (received, H), dt)
        g.op(Op.SLICE_ROWS, p + "experts.take", [recv], [xin], first=0)
        gu = _a(g, p + "experts.gate_up.out", (received, 2 * F), dt)
        g.op(Op.LINEAR, p + "experts.gate_up", [xin, gu_w], [gu], bias=False, group_rows=rows)
        act = _a(g, p + "experts.act", (received, F), dt)
        g.op(Op.SILU_MUL, p + "experts.silu_mul", [gu], [act], ffn=F)
        dn = _a(g, p + "experts.down.out", (received, H), dt)
        g.op(Op.LINEAR, p + "experts.down", [act, dn_w], [dn], bias=False, group_rows=rows)
        g.op(Op.PLACE_ROWS, p + "experts.put", [dn], [expert_out], first=0)
    back = _a(g, p + "moe.returned", (rows_x, H), dt)
    if ep > 1:
        g.op(Op.ALLTOALL, p + "moe.combine", [expert_out], [back], group=shard.ep_group, ep=ep)
    else:
        g.op(Op.RENAME, p + "moe.back", [expert_out], [back])
    shared = m.shared_experts
    if shared:  # always-on experts: one dense SwiGLU of shared x F on every token
        gu = linear("shared.gate_up", h, H, 2 * shared * F)
        act = _a(g, p + "shared.act", (T, shared * F), dt)
        g.op(Op.SILU_MUL, p + "shared.silu_mul", [gu], [act], ffn=shared * F)
        residual = linear("shared.down", act, shared * F, H, residual=residual)
    y = _a(g, p + "moe.out", (T, H), dt)
    g.op(Op.SUM_COPIES, p + "moe.sum", [back, residual], [y], copies=k)
    return y
