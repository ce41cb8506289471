"""Flash-attention backward (FlashAttention-2's algorithm): gradients of Q, K and V without
an S x S matrix in HBM.

A work item is one K/V tile of one (sequence, KV head): it keeps K_j, V_j and the fp32
accumulators dK_j, dV_j on its core and streams every (query head of the group, query tile)
that attends to it. Per streamed tile the scores are recomputed from Q and the forward's
row statistics (m, 1/l), P = exp(S - m) / l, and

    dV_j += P^T dO,   dP = dO V_j^T,   dS = P (dP - D) scale,   dK_j += dS^T Q,   dQ += dS K_j

(five matmuls); D = rowsum(dO * O) comes from a short kernel before. dQ gathers from every
K/V tile, so each part is added into an fp32 buffer in HBM with a reduce-add store (as
FlashAttention-2's atomic adds), zeroed before and cast into the gradient after.

Semaphores: 0/1 K,V full (dma->mx)  2/3 K,V free (mx->dma)  4/5 query tile full (dma->mx,
vec)  6/7 query tile free (mx->dma)  8 S ready (mx->vec)  9 P ready (vec->mx)  10 dP ready
(mx->vec)  11 dS ready (vec->mx)  12 dQ part ready (mx->vec)  13 dQ accumulator free
(vec->mx)  14 dQ out ready (vec->dma)  15 dQ out free (dma->vec)  16 dK,dV ready (mx->vec)
17 dK,dV accumulators free (vec->mx)  18 dK,dV out ready (vec->dma)  19 dK,dV out free
(dma->vec).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from isa import DType, build
from mapper.emit import Arena, Item, acc, hbm, sram
from mapper.kernels.attention import Attention, deal, stats_plane

KV_FULL, KV_FREE, QB_FULL, QB_FREE = 0, 2, 4, 6
S_READY, P_READY, DP_READY, DS_READY, DQA_READY, DQA_FREE, DQ_READY, DQ_FREE = range(8, 16)
DKVA_READY, DKVA_FREE, DKV_READY, DKV_FREE = 16, 17, 18, 19
F32 = DType.FP32
ALIGN = 64


@dataclass(frozen=True)
class AttentionBwd:
    """The backward of ``fwd`` (its Q, caches, output and ``stats`` addresses), prefill only
    (every query row's keys are the sequence's own, no cache before it)."""

    fwd: Attention
    dout: int  # dO rows [batch*sq, heads*hd]
    delta: int  # D = rowsum(dO * O): fp32 [batch*sq, heads]
    dq32: int  # fp32 [batch*sq, heads*hd], zeroed before, reduce-added into
    dk: int  # dK rows [batch*skv, kv_heads*hd] with leading dimension ldkv
    dv: int
    ldkv: int


@dataclass(frozen=True)
class _Tile:
    """One (query head, query tile) a K/V item streams."""

    q: int  # HBM address of Q rows
    do: int
    stats: int  # m of row 0 (1/l one plane on)
    delta: int  # D of row 0 (stride heads)
    dq: int  # fp32 dQ rows
    rows: int
    mask: int | None  # causal: offset of the diagonal (first query pos - first key)


@dataclass(frozen=True)
class _Item:
    k: int  # HBM address of K_j (V_j at the same offset of v_cache)
    v: int
    keys: int
    dk: int
    dv: int
    tiles: tuple[_Tile, ...]


def work(b: AttentionBwd) -> list[_Item]:
    a = b.fwd
    e = a.dt.nbytes(1)
    ldo = a.heads * a.hd
    out = []
    for s in range(a.batch):
        for g in range(a.kv_heads):
            base = ((s * a.kv_heads + g) * a.max_ctx) * a.hd * e
            for k0 in range(0, a.skv, a.tkv):
                keys = min(a.tkv, a.skv - k0)
                tiles = []
                for h in range(g * a.rep, (g + 1) * a.rep):
                    for q0 in range(0, a.sq, a.tq):
                        rows = min(a.tq, a.sq - q0)
                        pos = a.q_pos0 + q0
                        if a.causal and pos + rows - 1 < k0:
                            continue  # every row of the tile is before these keys
                        r = s * a.sq + q0
                        mask = pos - k0 if a.causal and k0 + keys - 1 > pos else None
                        tiles.append(_Tile(
                            a.q + (r * a.ldq + h * a.hd) * e, b.dout + (r * ldo + h * a.hd) * e,
                            a.stats + 4 * (h * a.batch * a.sq + r),  # type: ignore[operator]
                            b.delta + 4 * (r * a.heads + h), b.dq32 + 4 * (r * ldo + h * a.hd),
                            rows, mask))
                row = s * a.skv + k0
                out.append(_Item(a.k_cache + base + k0 * a.hd * e,
                                 a.v_cache + base + k0 * a.hd * e, keys,
                                 b.dk + (row * b.ldkv + g * a.hd) * e,
                                 b.dv + (row * b.ldkv + g * a.hd) * e, tuple(tiles)))
    return out


@dataclass(frozen=True)
class Regions:
    k: tuple[int, int]
    v: tuple[int, int]
    q: tuple[int, int]
    do: tuple[int, int]
    st: tuple[int, int]  # m, 1/l, D of the query tile (3 x tq fp32)
    p: int
    ds: int
    dq: int
    dkv: int  # dK then dV, bf16
    sram_bytes: int
    s: int  # accumulator regions
    dp: int
    dqa: int
    dka: int
    dva: int
    acc_bytes: int


def regions(a: Attention) -> Regions:
    arena = Arena(ALIGN)
    t = arena.take
    kv = a.dt.nbytes(a.tkv * a.hd)
    qt = a.dt.nbytes(a.tq * a.hd)
    r = dict(k=(t(kv), t(kv)), v=(t(kv), t(kv)), q=(t(qt), t(qt)), do=(t(qt), t(qt)),
             st=(t(12 * a.tq), t(12 * a.tq)), p=t(a.dt.nbytes(a.tq * a.tkv)),
             ds=t(a.dt.nbytes(a.tq * a.tkv)), dq=t(4 * a.tq * a.hd), dkv=t(2 * kv))
    sq, sd, kd = 4 * a.tq * a.tkv, 4 * a.tq * a.hd, 4 * a.tkv * a.hd
    return Regions(**r, sram_bytes=arena.size, s=0, dp=sq, dqa=2 * sq, dka=2 * sq + sd,
                   dva=2 * sq + sd + kd, acc_bytes=2 * sq + sd + 2 * kd)


def backward_programs(b: AttentionBwd, cores: int) -> list[list[Item]]:
    """Per-core programs of the five-matmul kernel (the D, zeroing and dQ cast kernels are
    row-wise kernels of their own, ``mapper.lowerings``)."""
    reg = regions(b.fwd)
    return [_prologue() + _dma(b, reg, mine) + _mx(b, reg, mine) + _vec(b, reg, mine)
            for mine in deal(work(b), cores)]  # type: ignore[arg-type]


def _prologue() -> list[Item]:
    return [build("sem.signal", "mx", KV_FREE), build("sem.signal", "mx", KV_FREE + 1),
            build("sem.signal", "mx", QB_FREE), build("sem.signal", "mx", QB_FREE + 1),
            build("sem.signal", "vec", DQA_FREE), build("sem.signal", "vec", DKVA_FREE),
            build("sem.signal", "dma", DQ_FREE), build("sem.signal", "dma", DKV_FREE)]


def _dma(b: AttentionBwd, r: Regions, items: list[_Item]) -> list[Item]:
    a = b.fwd
    ldo = a.heads * a.hd
    seq: list[Item] = []
    n = 0
    pending_dq: _Tile | None = None

    def store_dq(t: _Tile) -> list[Item]:
        return [build("sem.wait", "dma", DQ_READY),
                build("dma.storeadd", hbm(t.dq), sram(r.dq), F32, t.rows, a.hd, stride=ldo),
                build("sem.signal", "dma", DQ_FREE)]

    for i, it in enumerate(items):
        kb = i % 2
        seq += [build("sem.wait", "dma", KV_FREE + kb),
                build("dma.load", sram(r.k[kb]), hbm(it.k), a.dt, it.keys, a.hd),
                build("dma.load", sram(r.v[kb]), hbm(it.v), a.dt, it.keys, a.hd),
                build("sem.signal", "dma", KV_FULL + kb)]
        for t in it.tiles:
            qb = n % 2
            st = r.st[qb]
            seq += [build("sem.wait", "dma", QB_FREE + qb),
                    build("dma.load", sram(r.q[qb]), hbm(t.q), a.dt, t.rows, a.hd,
                          stride=a.ldq),
                    build("dma.load", sram(r.do[qb]), hbm(t.do), a.dt, t.rows, a.hd,
                          stride=ldo),
                    build("dma.load", sram(st), hbm(t.stats), F32, 1, t.rows, depth=2,
                          stride2=stats_plane(a), pitch=t.rows),
                    build("dma.load", sram(st + 8 * t.rows), hbm(t.delta), F32, t.rows, 1,
                          stride=a.heads),
                    build("sem.signal", "dma", QB_FULL + qb)]
            if pending_dq is not None:  # the previous tile's dQ part, under this load
                seq += store_dq(pending_dq)
            pending_dq = t
            n += 1
        seq += [build("sem.wait", "dma", DKV_READY),
                build("dma.store", hbm(it.dk), sram(r.dkv), a.dt, it.keys, a.hd,
                      stride=b.ldkv),
                build("dma.store", hbm(it.dv), sram(r.dkv + a.dt.nbytes(a.tkv * a.hd)), a.dt,
                      it.keys, a.hd, stride=b.ldkv),
                build("sem.signal", "dma", DKV_FREE)]
    if pending_dq is not None:
        seq += store_dq(pending_dq)
    return seq + [build("sem.wait", "dma", KV_FREE), build("sem.wait", "dma", KV_FREE + 1),
                  build("sem.wait", "dma", QB_FREE), build("sem.wait", "dma", QB_FREE + 1)]


def _mx(b: AttentionBwd, r: Regions, items: list[_Item]) -> list[Item]:
    a = b.fwd
    dt = a.dt
    seq: list[Item] = []
    n = 0
    made: dict[tuple, list[Item]] = {}  # a tile's instructions by what they depend on
    for i, it in enumerate(items):
        kb, keys = i % 2, it.keys
        seq += [build("sem.wait", "mx", KV_FULL + kb), build("sem.wait", "mx", DKVA_FREE)]
        for j, t in enumerate(it.tiles):
            qb, rows = n % 2, t.rows
            n += 1
            key = (kb, qb, rows, keys, j == 0)
            if key in made:
                seq += made[key]
                continue
            made[key] = tile = [
                build("sem.wait", "mx", QB_FULL + qb),
                build("mm", acc(r.s), sram(r.q[qb]), sram(r.k[kb]), rows, a.hd, keys, dt,
                      dt, "tw"),
                build("sem.signal", "mx", S_READY), build("sem.wait", "mx", P_READY),
                build("mm", acc(r.dva), sram(r.p), sram(r.do[qb]), keys, rows, a.hd, dt,
                      dt, "ta|accum" if j else "ta"),
                build("mm", acc(r.dp), sram(r.do[qb]), sram(r.v[kb]), rows, a.hd, keys,
                      dt, dt, "tw"),
                build("sem.signal", "mx", DP_READY), build("sem.wait", "mx", DS_READY),
                build("mm", acc(r.dka), sram(r.ds), sram(r.q[qb]), keys, rows, a.hd, dt,
                      dt, "ta|accum" if j else "ta"),
                build("sem.signal", "mx", QB_FREE + qb), build("sem.wait", "mx", DQA_FREE),
                build("mm", acc(r.dqa), sram(r.ds), sram(r.k[kb]), rows, keys, a.hd, dt,
                      dt, 0),
                build("sem.signal", "mx", DQA_READY)]
            seq += tile
        seq += [build("sem.signal", "mx", KV_FREE + kb), build("sem.signal", "mx", DKVA_READY)]
    return seq + [build("sem.wait", "mx", DQA_FREE), build("sem.wait", "mx", DKVA_FREE)]


def _vec(b: AttentionBwd, r: Regions, items: list[_Item]) -> list[Item]:
    a = b.fwd
    scale = 1.0 / math.sqrt(a.hd)
    s, dp = acc(r.s), acc(r.dp)
    seq: list[Item] = []
    n = 0
    made: dict[tuple, list[Item]] = {}  # a tile's instructions by what they depend on
    for it in items:
        keys = it.keys
        for t in it.tiles:
            rows, st = t.rows, r.st[n % 2]
            n += 1
            key = (st, rows, keys, t.mask)
            if key in made:
                seq += made[key]
                continue
            m, linv, d = sram(st), sram(st + 4 * rows), sram(st + 8 * rows)
            tile = [build("sem.wait", "vec", S_READY),
                    build("v.scale", s, s, rows, keys, F32, F32, scale)]
            if t.mask is not None:
                tile.append(build("v.cmask", s, s, rows, keys, F32, F32, t.mask))
            tile += [build("v.sub", s, s, m, rows, keys, F32, F32, F32, "col"),
                    build("v.exp", s, s, rows, keys, F32, F32),
                    build("v.mul", s, s, linv, rows, keys, F32, F32, F32, "col"),
                    build("v.cast", sram(r.p), s, rows, keys, a.dt, F32),
                    build("sem.signal", "vec", P_READY), build("sem.wait", "vec", DP_READY),
                    build("v.sub", dp, dp, d, rows, keys, F32, F32, F32, "col"),
                    build("v.mul", dp, dp, s, rows, keys, F32, F32, F32),
                    build("v.scale", dp, dp, rows, keys, F32, F32, scale),
                    build("v.cast", sram(r.ds), dp, rows, keys, a.dt, F32),
                    build("sem.signal", "vec", DS_READY),
                    build("sem.wait", "vec", DQA_READY), build("sem.wait", "vec", DQ_FREE),
                    build("v.cast", sram(r.dq), acc(r.dqa), rows, a.hd, F32, F32),
                    build("sem.signal", "vec", DQA_FREE), build("sem.signal", "vec", DQ_READY)]
            made[key] = tile
            seq += tile
        half = a.dt.nbytes(a.tkv * a.hd)
        seq += [build("sem.wait", "vec", DKVA_READY), build("sem.wait", "vec", DKV_FREE),
                build("v.cast", sram(r.dkv), acc(r.dka), keys, a.hd, a.dt, F32),
                build("v.cast", sram(r.dkv + half), acc(r.dva), keys, a.hd, a.dt, F32),
                build("sem.signal", "vec", DKVA_FREE), build("sem.signal", "vec", DKV_READY)]
    return seq + [build("sem.wait", "vec", DQ_FREE), build("sem.wait", "vec", DKV_FREE)]


__all__ = ["AttentionBwd", "backward_programs", "regions", "work"]
