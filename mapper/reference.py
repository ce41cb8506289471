"""An independent numpy forward pass of decoder / encoder layers: the check of functional mode.

Written from the model definitions (not from the mapper): pre-norm decoders with RMSNorm,
RoPE, GQA and SwiGLU (LLaMA) or LayerNorm, learned positions and GELU (GPT-2), computed in
float64 with bf16 rounding where the hardware stores bf16 tensors.
"""

from __future__ import annotations

import numpy as np

from isa.dtypes import DType
from isa.numerics import round_to


def bf16(x: np.ndarray) -> np.ndarray:
    return round_to(x, DType.BF16)


def rmsnorm(x, w, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


def layernorm(x, wb, eps):
    h = x.shape[-1]
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * wb[:h] + wb[h:]


def gelu(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def rope(x, pos, theta):
    """x [T, heads, hd]; rotate-half convention."""
    hd = x.shape[-1]
    freq = theta ** (-np.arange(0, hd, 2) / hd)
    ang = pos[:, None] * freq[None, :]
    cos = np.concatenate([np.cos(ang)] * 2, -1)[:, None, :]
    sin = np.concatenate([np.sin(ang)] * 2, -1)[:, None, :]
    rot = np.concatenate([-x[..., hd // 2:], x[..., :hd // 2]], -1)
    return x * cos + rot * sin


def attention(q, k, v, causal, q_pos, kv_pos):
    """q [Tq, H, hd], k/v [Tkv, KVH, hd] of one sequence."""
    rep = q.shape[1] // k.shape[1]
    k, v = np.repeat(k, rep, axis=1), np.repeat(v, rep, axis=1)
    s = np.einsum("qhd,khd->hqk", q, k) / np.sqrt(q.shape[-1])
    if causal:
        s = np.where(kv_pos[None, None, :] > q_pos[None, :, None], -np.inf, s)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return np.einsum("hqk,khd->qhd", p, v)


def layer(m, w: dict, li: int, x: np.ndarray, batch: int, past: int,
          k_cache: np.ndarray | None = None, v_cache: np.ndarray | None = None):
    """One layer on x [B*S, H]; returns (y, new K cache, new V cache) [B, KVH, past+S, hd]."""
    p = f"l{li}."
    T, H = x.shape
    S = T // batch
    hd, nh, nkv = m.head_dim, m.heads, m.kv_heads
    swiglu = getattr(m.mlp, "value", m.mlp) == "swiglu"
    norm = (lambda t, n: rmsnorm(t, w[p + n + ".w"], m.norm_eps)) if not swiglu or \
        getattr(m.norm, "value", m.norm) == "rmsnorm" else None
    if getattr(m.norm, "value", m.norm) == "layernorm":
        norm = lambda t, n: layernorm(t, w[p + n + ".w"], m.norm_eps)  # noqa: E731

    def lin(t, name, **_):
        y = t @ w[p + name + ".w"]
        if m.bias:
            y = y + w[p + name + ".b"]
        return y

    h = bf16(norm(x, "norm1"))
    pos = past + np.tile(np.arange(S), batch)
    if getattr(m, "kv_lora_rank", 0):
        att, kcs, vcs = mla(m, w, p, h, batch, past, pos, k_cache, v_cache)
        return _mlp(m, w, p, x, att, lin, norm, swiglu), kcs, vcs
    qkv = bf16(lin(h, "qkv"))
    q = qkv[:, :nh * hd].reshape(T, nh, hd)
    k = qkv[:, nh * hd:(nh + nkv) * hd].reshape(T, nkv, hd)
    v = qkv[:, (nh + nkv) * hd:].reshape(T, nkv, hd)
    if getattr(m, "qk_norm", False):  # Qwen3: RMSNorm over each head
        q = bf16(rmsnorm(q, w[p + "q_norm.w"], m.norm_eps))
        k = bf16(rmsnorm(k, w[p + "k_norm.w"], m.norm_eps))
    if getattr(m.position, "value", m.position) == "rope":
        q, k = bf16(rope(q, pos, m.rope_theta)), bf16(rope(k, pos, m.rope_theta))
    outs, kcs, vcs = [], [], []
    for b in range(batch):
        sl = slice(b * S, (b + 1) * S)
        kc = k[sl].transpose(1, 0, 2)
        vc = v[sl].transpose(1, 0, 2)
        if past:
            kc = np.concatenate([k_cache[b], kc], axis=1)
            vc = np.concatenate([v_cache[b], vc], axis=1)
        kcs.append(kc)
        vcs.append(vc)
        o = attention(q[sl], kc.transpose(1, 0, 2), vc.transpose(1, 0, 2), True,
                      past + np.arange(S), np.arange(past + S))
        outs.append(o.reshape(S, nh * hd))
    att = bf16(np.concatenate(outs))
    return _mlp(m, w, p, x, att, lin, norm, swiglu), np.stack(kcs), np.stack(vcs)


def _mlp(m, w, p, x, att, lin, norm, swiglu):
    """Output projection + residual, norm, MLP + residual (pre-norm)."""
    x1 = bf16(lin(att, "o") + x)
    h2 = bf16(norm(x1, "norm2"))
    if swiglu:
        gu = bf16(lin(h2, "gate_up"))
        f = gu.shape[1] // 2
        gate = bf16(gu[:, :f] / (1 + np.exp(-gu[:, :f])))
        act = bf16(gate * gu[:, f:])
        y = bf16(lin(act, "down") + x1)
    else:
        up = bf16(gelu(lin(h2, "up")))
        y = bf16(lin(up, "down") + x1)
    return y


def mla(m, w, p, h, batch, past, pos, lat_cache, kpe_cache):
    """Multi-head latent attention as DeepSeek-V2 defines it (the naive form: keys and
    values decompressed from the latent per head, W_UK and W_UV being the per-head blocks
    of kv_b_proj), on h [B*S, H]; returns (attention output [B*S, heads*v_head_dim], the
    latent caches [B, past+S, r], the rotary-key caches [B, past+S, rope_dim])."""
    T = h.shape[0]
    S = T // batch
    nh, dn, dr, dv, r = m.heads, m.head_dim, m.rope_dim, m.v_head_dim, m.kv_lora_rank
    eps = m.norm_eps
    cq = h
    if m.q_lora_rank:
        cq = bf16(rmsnorm(bf16(h @ w[p + "q_a.w"]), w[p + "q_norm.w"], eps))
    q_nope = bf16(cq @ w[p + "q_nope.w"]).reshape(T, nh, dn)
    q_rope = bf16(rope(bf16(cq @ w[p + "q_rope.w"]).reshape(T, nh, dr), pos, m.rope_theta))
    lat = bf16(rmsnorm(bf16(h @ w[p + "kv_a.w"]), w[p + "kv_norm.w"], eps))
    k_pe = bf16(rope(bf16(h @ w[p + "k_rope.w"])[:, None, :], pos, m.rope_theta))[:, 0]
    if p + "kv_b.w" in w:  # kv_b_proj as stored: per head, its keys' then values' columns
        kvb = w[p + "kv_b.w"].reshape(r, nh, dn + dv)
        w_uk, w_uv = kvb[:, :, :dn].transpose(1, 2, 0), kvb[:, :, dn:].transpose(1, 0, 2)
    else:  # the absorbed layout (decode): W_UK [heads, dn, r], W_UV [heads, r, dv]
        w_uk = w[p + "q_absorb.w"].reshape(nh, dn, r)  # head j: k_nope = latent @ W_UK[j]^T
        w_uv = w[p + "v_absorb.w"].reshape(nh, r, dv)  # head j: v = latent @ W_UV[j]
    outs, lats, kpes = [], [], []
    for b in range(batch):
        sl = slice(b * S, (b + 1) * S)
        la = np.concatenate([lat_cache[b], lat[sl]]) if past else lat[sl]
        kp = np.concatenate([kpe_cache[b], k_pe[sl]]) if past else k_pe[sl]
        lats.append(la)
        kpes.append(kp)
        k_nope = np.einsum("kr,hdr->khd", la, w_uk)
        k = np.concatenate([k_nope, np.repeat(kp[:, None, :], nh, axis=1)], -1)
        v = np.einsum("kr,hrd->khd", la, w_uv)
        q = np.concatenate([q_nope[sl], q_rope[sl]], -1)
        o = attention(q, k, v, True, past + np.arange(S), np.arange(past + S))
        outs.append(o.reshape(S, nh * dv))
    return bf16(np.concatenate(outs)), np.stack(lats), np.stack(kpes)
