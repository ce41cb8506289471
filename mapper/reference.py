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
    qkv = bf16(lin(h, "qkv"))
    q = qkv[:, :nh * hd].reshape(T, nh, hd)
    k = qkv[:, nh * hd:(nh + nkv) * hd].reshape(T, nkv, hd)
    v = qkv[:, (nh + nkv) * hd:].reshape(T, nkv, hd)
    pos = past + np.tile(np.arange(S), batch)
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
    return y, np.stack(kcs), np.stack(vcs)
