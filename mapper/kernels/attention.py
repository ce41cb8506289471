"""Fused (flash) attention: Q tiles against streamed K/V tiles with an online softmax.

Scores live in the accumulator and probabilities in SRAM; nothing of size S x S reaches HBM.
Work items — (sequence, head, query tile) in prefill, (sequence, KV-head group) in decode,
where the group's query heads share each K/V tile (GQA) — are dealt round-robin to the
cores. K/V tiles are double-buffered so their loads overlap the previous step's math.

Semaphores: 0/1 K,V full (dma->mx)  2/3 K,V free (mx->dma)  5 Q loaded (dma->mx)
6 scores ready (mx->vec)  7 P ready (vec->mx)  8 O final (mx->vec)
9 O out ready (vec->dma)  10 O out free (dma->vec)  11 Q buffer free (mx->dma)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from isa import DType, build
from mapper.emit import Arena, Item, acc, hbm, sram, steps
from mapper.kernels.gemm import ceil_div

KV_FULL, KV_FREE, Q_READY, S_READY, P_READY = 0, 2, 5, 6, 7
O_FINAL, O_READY, O_FREE, Q_FREE = 8, 9, 10, 11
F32 = DType.FP32
ALIGN = 64


@dataclass(frozen=True)
class Attention:
    batch: int
    heads: int
    kv_heads: int
    hd: int
    sq: int  # query tokens per sequence
    skv: int  # key/value tokens per sequence (cache + new)
    q_pos0: int  # position of the first query token
    causal: bool
    q: int  # HBM address of Q rows [batch*sq, ldq], head h at column h*hd
    ldq: int
    k_cache: int  # [batch, kv_heads, max_ctx, hd]
    v_cache: int
    max_ctx: int
    out: int  # [batch*sq, heads*hd]
    dt: DType = DType.BF16
    tq: int = 64
    tkv: int = 64
    # training: also store each query row's softmax max m and 1 / sum l (fp32), for the
    # backward pass; planes [2, heads, batch*sq] at this HBM address (None: not kept)
    stats: int | None = None
    # multi-head latent attention (absorbed, as FlashMLA runs it): a cache row is the latent
    # (hd) then a rotary key (rope_dim) shared by every head; a query head is its absorbed
    # latent part (at q) and its rotary part (at q_rope); scores add the two products, and
    # the values are the latent tile already in SRAM (no V load)
    rope_dim: int = 0
    q_rope: int = 0
    ldq_rope: int = 0
    scale: float = 0.0  # softmax scale (0: 1 / sqrt(hd))
    # decode: query heads of a group per work item (0: all; MLA's 128 heads share one
    # latent but do not fit one core's accumulator at once, so FlashMLA takes 64 at a time)
    head_block: int = 0
    window: int = 0  # sliding window: each query sees its last ``window`` keys (0: all)
    # MLA prefill in DeepSeek's own (naive) form: keys and values decompressed per head in
    # one token-major tensor (k_cache = v_cache - hd: a head's no-rotary key then its value,
    # heads kv_stride elements apart, kv_pitch per token) and the rotary keys, shared by
    # every head, at k_rope (rope_dim per token)
    k_rope: int = -1
    kv_pitch: int = 0
    kv_stride: int = 0

    @property
    def rep(self) -> int:
        return self.heads // self.kv_heads

    @property
    def decode(self) -> bool:
        """One query token per sequence that sees every key: a decode step, causal or not
        (the new token is the last position, so a causal mask hides nothing)."""
        return self.sq == 1 and (not self.causal or self.q_pos0 >= self.skv - 1)

    @property
    def rows_decode(self) -> int:
        return min(self.rep, self.head_block or self.rep)

    @property
    def naive(self) -> bool:
        return self.k_rope >= 0

    @property
    def kp(self) -> int:
        """Elements from one key to the next in K's memory."""
        return self.kv_pitch if self.naive else self.hd + self.rope_dim


@dataclass(frozen=True)
class Item_:
    q_addr: int
    q_stride: int  # elements between Q rows (MLA: the rotary part at q_rope_addr)
    rows: int
    o_addr: int
    o_stride: int
    kv_base: int  # byte offset of this (sequence, kv head) in the caches
    n_kv: int  # keys attended
    first_pos: int  # position of query row 0 (for the causal mask)
    causal: bool
    # split-KV: this item is one part of a sequence's keys; it writes its unnormalised
    # output rows, then each row's max and sum (fp32), to ``o_addr`` instead of the output
    partial: bool = False
    stats: int | None = None  # HBM address of row 0's m (1/l one plane further on)
    q_rope_addr: int = 0
    q_rope_stride: int = 0  # elements between the rotary parts' rows
    rope_base: int = 0  # naive MLA: byte offset of this sequence's rotary keys


def stats_plane(a: Attention) -> int:
    """Elements of one plane of the softmax statistics (m, or 1/l): heads x query rows."""
    return a.heads * a.batch * a.sq


def items(a: Attention) -> list[Item_]:
    e = a.dt.nbytes(1)
    ldo = a.heads * a.hd
    out: list[Item_] = []
    for b in range(a.batch):
        for g in range(a.kv_heads):
            kv = ((b * a.kv_heads + g) * a.max_ctx) * a.kp * e
            if a.naive:
                kv = (b * a.max_ctx * a.kp + g * a.kv_stride) * e
            rope0 = b * a.max_ctx * a.rope_dim * e
            if a.sq == 1:  # decode: the group's query heads are the rows
                lo = max(0, a.skv - a.window) if a.window else 0
                for h0 in range(g * a.rep, (g + 1) * a.rep, a.rows_decode):
                    rows = min(a.rows_decode, (g + 1) * a.rep - h0)
                    out.append(Item_(a.q + (b * a.ldq + h0 * a.hd) * e, a.hd, rows,
                                     a.out + (b * ldo + h0 * a.hd) * e, a.hd,
                                     kv + lo * a.kp * e, a.skv - lo, a.q_pos0, False,
                                     q_rope_addr=a.q_rope + (b * a.ldq_rope + h0 * a.rope_dim)
                                     * e, q_rope_stride=a.rope_dim))
                continue
            for h in range(g * a.rep, (g + 1) * a.rep):
                for q0 in range(0, a.sq, a.tq):
                    rows = min(a.tq, a.sq - q0)
                    first = a.q_pos0 + q0
                    n_kv = min(a.skv, first + rows) if a.causal else a.skv
                    # a sliding window starts at the tile of the first row's oldest key
                    lo = max(0, first - a.window + 1) // a.tkv * a.tkv \
                        if a.window and a.causal else 0
                    st = None if a.stats is None else \
                        a.stats + 4 * (h * a.batch * a.sq + b * a.sq + q0)
                    out.append(Item_(a.q + ((b * a.sq + q0) * a.ldq + h * a.hd) * e, a.ldq,
                                     rows, a.out + ((b * a.sq + q0) * ldo + h * a.hd) * e, ldo,
                                     kv + lo * a.kp * e, n_kv - lo, first - lo, a.causal,
                                     stats=st, q_rope_addr=a.q_rope + ((b * a.sq + q0)
                                                                       * a.ldq_rope
                                                                       + h * a.rope_dim) * e,
                                     q_rope_stride=a.ldq_rope,
                                     rope_base=rope0 + lo * a.rope_dim * e))
    return out


@dataclass(frozen=True)
class Regions:
    q: tuple[int, int]  # item i's Q in q[i % 2] (decode: two; prefill: one, twice)
    k: tuple[int, int]
    v: tuple[int, int]
    p: int
    o_out: int
    m: int
    mt: int
    mnew: int
    corr: int
    l: int  # noqa: E741 - the softmax denominator's usual name
    lt: int
    s: int  # accumulator
    o: int  # accumulator
    sram_bytes: int
    acc_bytes: int


def regions(a: Attention, partial: bool = False) -> Regions:
    arena = Arena(ALIGN)
    take = arena.take

    rows = max(a.tq, a.rows_decode)
    kv = a.dt.nbytes(a.tkv * (a.hd + a.rope_dim))  # MLA: the rotary key after the latent
    out = 4 * rows * (a.hd + 2) if partial else a.dt.nbytes(rows * a.hd) + \
        (8 * rows if a.stats is not None else 0)
    k = (take(kv), take(kv))
    v = k if a.rope_dim and not a.naive else (take(kv), take(kv))  # absorbed MLA: the
    # values are the latent tile
    q_bytes = a.dt.nbytes(rows * (a.hd + a.rope_dim))
    q0 = take(q_bytes)
    r = dict(q=(q0, take(q_bytes) if resident_q(a) == 2 else q0), k=k, v=v,
             p=take(a.dt.nbytes(rows * a.tkv)), o_out=take(out),
             m=take(4 * rows), mt=take(4 * rows), mnew=take(4 * rows), corr=take(4 * rows),
             l=take(4 * rows), lt=take(4 * rows))
    s_bytes = 4 * rows * a.tkv
    return Regions(**r, s=0, o=s_bytes, sram_bytes=arena.size, acc_bytes=s_bytes + 4 * rows * a.hd)


def attention_programs(a: Attention, cores: int, scratch: int | None = None,
                       boundary: tuple = (), sram_capacity: int = 0) -> list[list[Item]]:
    """Per-core programs; decode with fewer work items than half the cores is split over
    the keys (``kv_parts``: flash-decoding) when ``scratch`` (HBM for the parts' partial
    results) is given: every part attends over its run of K/V tiles and writes its
    unnormalised output and each row's max and sum; after a chip-wide sync (a second
    kernel on a GPU) the parts of each sequence are combined (``combine_programs``)."""
    work = items(a)
    parts = kv_parts(a, len(work), cores) if scratch is not None else 1
    rows = work[0].rows if work else 1
    slot = 4 * rows * (a.hd + 2)
    while parts > 1 and (parts * slot + max(a.dt.nbytes(rows * a.hd), 4 * rows) + 2 * ALIGN
                         > sram_capacity or regions(a, True).sram_bytes > sram_capacity):
        parts = parts // 2 if regions(a, True).sram_bytes <= sram_capacity else 1
    if parts == 1:
        reg = regions(a)
        return [_prologue(a) + _dma(a, reg, mine) + _mx(a, reg, mine) + _vec(a, reg, mine)
                for mine in deal(work, cores)]
    reg = regions(a, partial=True)
    units, rows = _split(a, work, parts, scratch)
    assert scratch is not None
    first = [_prologue(a) + _dma(a, reg, mine) + _mx(a, reg, mine) + _vec(a, reg, mine)
             for mine in deal(units, cores)]
    second = combine_programs(a, work, parts, scratch, rows, cores)
    return [(first[c] if c < len(first) else []) + list(boundary)
            + (second[c] if c < len(second) else []) for c in range(cores)]


KV_SPLIT_MIN_TILES = 4  # K/V tiles each part of a split sequence keeps
KV_SPLIT_MAX = 16


def kv_parts(a: Attention, n_items: int, cores: int) -> int:
    """Parts each decode item's keys are split into: when the items would leave at least
    half the cores idle (few sequences x KV heads), enough parts to fill them, each at
    least ``KV_SPLIT_MIN_TILES`` tiles long (at most ``KV_SPLIT_MAX``), as flash-decoding
    does on GPUs."""
    if not a.decode or 2 * n_items > cores:
        return 1
    return max(1, min(cores // n_items, -(-a.skv // a.tkv) // KV_SPLIT_MIN_TILES,
                      KV_SPLIT_MAX))


def _split(a: Attention, work: list[Item_], parts: int, scratch: int
           ) -> tuple[list[Item_], int]:
    """The parts of every item (part-major), each writing to its slot of ``scratch``:
    part p of item i at ((p * items + i) * rows) rows of (hd + 2) fp32 each."""
    e = a.dt.nbytes(1)
    rows = work[0].rows
    tiles = -(-a.skv // a.tkv)
    out = []
    for p in range(parts):
        t0, t1 = p * tiles // parts, (p + 1) * tiles // parts
        k0, k1 = t0 * a.tkv, min(a.skv, t1 * a.tkv)
        for i, it in enumerate(work):
            slot = scratch + 4 * (p * len(work) + i) * rows * (a.hd + 2)
            out.append(Item_(it.q_addr, it.q_stride, rows, slot, a.hd,
                             it.kv_base + k0 * a.kp * e, k1 - k0, it.first_pos, False, True,
                             q_rope_addr=it.q_rope_addr, q_rope_stride=it.q_rope_stride,
                             rope_base=it.rope_base + k0 * a.rope_dim * e))
    return out, rows


def combine_programs(a: Attention, work: list[Item_], parts: int, scratch: int, rows: int,
                     cores: int) -> list[list[Item]]:
    """Each item's parts combined: M = max of the parts' row maxima, w_p = exp(m_p - M),
    O = sum w_p O_p / sum w_p l_p, cast and stored to the item's output rows. Items are
    dealt to the cores; loads and stores overlap nothing (a short second kernel)."""
    f32 = F32
    slot = 4 * rows * (a.hd + 2)
    arena = Arena(ALIGN)
    bufs = [arena.take(slot) for _ in range(parts)]
    out_buf = arena.take(max(a.dt.nbytes(rows * a.hd), 4 * rows))
    progs: list[list[Item]] = []
    for core in range(min(cores, len(work))):
        seq: list[Item] = []
        for i in range(core, len(work), cores):
            it = work[i]
            for p in range(parts):
                at = scratch + (p * len(work) + i) * slot
                seq.append(build("dma.load", sram(bufs[p]), hbm(at), f32, 1, slot // 4))
            seq += [build("sem.signal", "dma", 0), build("sem.wait", "vec", 0)]
            o = [sram(b) for b in bufs]
            m = [sram(b + 4 * rows * a.hd) for b in bufs]
            lsum = [sram(b + 4 * rows * (a.hd + 1)) for b in bufs]
            big = sram(out_buf)
            seq.append(build("v.max", big, m[0], m[1], rows, 1, f32, f32, f32))
            seq += [build("v.max", big, big, x, rows, 1, f32, f32, f32) for x in m[2:]]
            for p in range(parts):  # w_p into m_p
                seq += [build("v.sub", m[p], m[p], big, rows, 1, f32, f32, f32),
                        build("v.exp", m[p], m[p], rows, 1, f32, f32)]
            seq += [build("v.mul", o[0], o[0], m[0], rows, a.hd, f32, f32, f32, "col"),
                    build("v.mul", lsum[0], lsum[0], m[0], rows, 1, f32, f32, f32)]
            for p in range(1, parts):
                seq += [build("v.mul", o[p], o[p], m[p], rows, a.hd, f32, f32, f32, "col"),
                        build("v.add", o[0], o[0], o[p], rows, a.hd, f32, f32, f32),
                        build("v.mul", lsum[p], lsum[p], m[p], rows, 1, f32, f32, f32),
                        build("v.add", lsum[0], lsum[0], lsum[p], rows, 1, f32, f32, f32)]
            seq += [build("v.recip", lsum[0], lsum[0], rows, 1, f32, f32),
                    build("v.mul", o[0], o[0], lsum[0], rows, a.hd, f32, f32, f32, "col"),
                    build("v.cast", big, o[0], rows, a.hd, a.dt, f32),
                    build("sem.signal", "vec", 1), build("sem.wait", "dma", 1),
                    build("dma.store", hbm(it.o_addr), big, a.dt, rows, a.hd,
                          stride=it.o_stride)]
        progs.append(seq)
    return progs


def deal(work: list[Item_], cores: int) -> list[list[Item_]]:
    """Work items to cores in passes that alternate direction (a snake): causal items grow
    with their query tile's position, and plain round-robin can give one core the long
    tiles of every head; the snake pairs long with short, and items of one head still run
    at about the same time (their K/V tiles are shared through the L2, as a GPU's thread
    blocks of one head, launched together, share them). Dealing causal items in lanes of
    identical cores would let the simulator run one core per lane, but breaks that sharing
    (65-72% error on the batched prefill rows of the calibration), so it is not done."""
    n = min(cores, len(work))
    out: list[list[Item_]] = [[] for _ in range(n)]
    for i, it in enumerate(work):
        k, pos = divmod(i, n)
        out[pos if k % 2 == 0 else n - 1 - pos].append(it)
    return out


def resident_q(a: Attention) -> int:
    """Work items whose Q a core holds at once. A GPU's decode attention runs small thread
    blocks, several to an SM, so the next block's first loads overlap this one's last
    tiles; its prefill blocks are large, one or two to an SM. Decode (one query token per
    sequence) therefore keeps two Q buffers: the next item's Q and first K/V tile load
    while this item finishes, and the load latency is paid once per core, not per item."""
    return 2 if a.decode else 1


def _prologue(a: Attention) -> list[Item]:
    return [build("sem.signal", "mx", KV_FREE), build("sem.signal", "mx", KV_FREE + 1),
            *[build("sem.signal", "mx", Q_FREE)] * resident_q(a),
            build("sem.signal", "dma", O_FREE)]


class _Tiles:
    """(first key, keys) of each K/V tile an item streams, computed when asked: a 32k-token
    item streams 256 of them, and listing every tile of every item three times (once per
    engine) was a third of a long prefill's lowering."""

    __slots__ = ("n", "n_kv", "tkv")

    def __init__(self, n_kv: int, tkv: int) -> None:
        self.n_kv, self.tkv = n_kv, tkv
        self.n = -(-n_kv // tkv)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, n: int) -> tuple[int, int]:
        if n < 0:
            n += self.n
        if not 0 <= n < self.n:
            raise IndexError(n)
        t0 = n * self.tkv
        return t0, min(self.tkv, self.n_kv - t0)


def _kv_tiles(a: Attention, it: Item_) -> _Tiles:
    """(first key, keys) of each K/V tile this item streams."""
    return _Tiles(it.n_kv, a.tkv)


def _dma(a: Attention, r: Regions, work: list[Item_]) -> list[Item]:
    """Q of each item, then its K/V tiles (the uniform middle ones in a loop whose register
    steps both caches), the previous item's output stored after the first tile."""
    e = a.dt.nbytes(1)
    seq: list[Item] = []
    g = 0
    prev = None
    for i, it in enumerate(work):
        q = r.q[i % 2]
        seq += [build("sem.wait", "dma", Q_FREE),
                build("dma.load", sram(q), hbm(it.q_addr), a.dt, it.rows, a.hd,
                      stride=it.q_stride)]
        if a.rope_dim:
            seq.append(build("dma.load", sram(q + a.dt.nbytes(it.rows * a.hd)),
                             hbm(it.q_rope_addr), a.dt, it.rows, a.rope_dim,
                             stride=it.q_rope_stride))
        seq.append(build("sem.signal", "dma", Q_READY))
        tiles = _kv_tiles(a, it)

        def step(n: int, in_loop: bool, it=it, tiles=tiles, g0=g) -> list[Item]:
            t0, keys = tiles[n]
            b = (g0 + n) % 2
            off = it.kv_base + t0 * a.kp * e
            reg = 0 if in_loop else None
            if a.naive:  # the head's no-rotary keys, its rotary keys (shared), its values
                rr = 1 if in_loop else None
                at = it.rope_base + t0 * a.rope_dim * e
                loads = [build("dma.load", sram(r.k[b]), hbm(a.k_cache + off, reg), a.dt, keys,
                               a.hd, stride=a.kp),
                         build("dma.load", sram(r.k[b] + a.dt.nbytes(keys * a.hd)),
                               hbm(a.k_rope + at, rr), a.dt, keys, a.rope_dim),
                         build("dma.load", sram(r.v[b]), hbm(a.v_cache + off, reg), a.dt, keys,
                               a.hd, stride=a.kp)]
            elif a.rope_dim:  # the latent, then the rotary keys, from one cache row each
                loads = [build("dma.load", sram(r.k[b]), hbm(a.k_cache + off, reg), a.dt, keys,
                               a.hd, stride=a.kp),
                         build("dma.load", sram(r.k[b] + a.dt.nbytes(keys * a.hd)),
                               hbm(a.k_cache + off + a.hd * e, reg), a.dt, keys, a.rope_dim,
                               stride=a.kp)]
            else:
                loads = [build("dma.load", sram(r.k[b]), hbm(a.k_cache + off, reg), a.dt, keys,
                               a.hd),
                         build("dma.load", sram(r.v[b]), hbm(a.v_cache + off, reg), a.dt, keys,
                               a.hd)]
            return [build("sem.wait", "dma", KV_FREE + b), *loads,
                    build("sem.signal", "dma", KV_FULL + b)]

        seq += step(0, False)
        if prev is not None:
            seq += _store(a, r, prev)
        full = len(tiles) - 1 - (1 if len(tiles) > 1 and tiles[-1][1] < a.tkv else 0)
        regs = (("a0", 2 * a.tkv * a.kp * e),) + (
            (("a1", 2 * a.tkv * a.rope_dim * e),) if a.naive else ())
        seq += steps(full, step, regs, 1)
        seq += [i for n in range(1 + full, len(tiles)) for i in step(n, False)]
        g += len(tiles)
        prev = it
    if prev is not None:
        seq += _store(a, r, prev)
    return seq + [build("sem.wait", "dma", KV_FREE), build("sem.wait", "dma", KV_FREE + 1),
                  *[build("sem.wait", "dma", Q_FREE)] * resident_q(a)]


def _store(a: Attention, r: Regions, it: Item_) -> list[Item]:
    if it.partial:  # O, m and l in one contiguous fp32 slot
        return [build("sem.wait", "dma", O_READY),
                build("dma.store", hbm(it.o_addr), sram(r.o_out), F32, 1,
                      it.rows * (a.hd + 2)),
                build("sem.signal", "dma", O_FREE)]
    stats = [] if it.stats is None else [  # m and 1/l: one run per plane
        build("dma.store", hbm(it.stats), sram(r.o_out + a.dt.nbytes(it.rows * a.hd)), F32, 1,
              it.rows, depth=2, stride2=stats_plane(a), pitch=it.rows)]
    return [build("sem.wait", "dma", O_READY),
            build("dma.store", hbm(it.o_addr), sram(r.o_out), a.dt, it.rows, a.hd,
                  stride=it.o_stride), *stats,
            build("sem.signal", "dma", O_FREE)]


def _uniform(n_tiles: int, odd: Callable[[int], bool]) -> tuple[int, int]:
    """(first, count) of the run of tiles after the first that ``odd`` does not single out;
    those tiles emit the same instructions, so they can run as a loop. The tiles ``odd``
    singles out are a tail (the last, ragged tile; the causal mask's diagonal tiles, whose
    keys pass the first query position, and every one after), so the run ends where that
    tail begins, found from the end: a few tests an item, not one per tile."""
    n = n_tiles
    while n > 1 and odd(n - 1):
        n -= 1
    return 1, n - 1


def _mx(a: Attention, r: Regions, work: list[Item_]) -> list[Item]:
    seq: list[Item] = []
    g = 0
    made: dict[tuple, list[Item]] = {}  # a tile's instructions by what they depend on
    for i, it in enumerate(work):
        seq.append(build("sem.wait", "mx", Q_READY))
        tiles = _kv_tiles(a, it)

        def step(n: int, in_loop: bool, it=it, tiles=tiles, g0=g, q=r.q[i % 2]
                 ) -> list[Item]:
            keys = tiles[n][1]
            b = (g0 + n) % 2
            key = (q, b, it.rows, keys, n == len(tiles) - 1, n == 0)
            if key in made:
                return made[key]
            out = [build("sem.wait", "mx", KV_FULL + b),
                   build("mm", acc(r.s), sram(q), sram(r.k[b]), it.rows, a.hd, keys, a.dt,
                         a.dt, "tw")]
            if a.rope_dim:  # + the rotary parts' scores
                out.append(build("mm", acc(r.s), sram(q + a.dt.nbytes(it.rows * a.hd)),
                                 sram(r.k[b] + a.dt.nbytes(keys * a.hd)), it.rows, a.rope_dim,
                                 keys, a.dt, a.dt, "tw|accum"))
            if n == len(tiles) - 1:
                out.append(build("sem.signal", "mx", Q_FREE))
            out += [build("sem.signal", "mx", S_READY), build("sem.wait", "mx", P_READY),
                    build("mm", acc(r.o), sram(r.p), sram(r.v[b]), it.rows, keys, a.hd, a.dt,
                          a.dt, "accum" if n else 0),
                    build("sem.signal", "mx", KV_FREE + b)]
            made[key] = out
            return out

        first, count = _uniform(len(tiles), lambda n, tiles=tiles: n == len(tiles) - 1 or
                                tiles[n][1] < a.tkv)
        seq += step(0, False) + steps(count, step, (), first)
        seq += [i for n in range(first + count, len(tiles)) for i in step(n, False)]
        g += len(tiles)
        seq.append(build("sem.signal", "mx", O_FINAL))
    return seq


def _vec(a: Attention, r: Regions, work: list[Item_]) -> list[Item]:
    seq: list[Item] = []
    scale = a.scale or 1.0 / math.sqrt(a.hd)
    made: dict[tuple, list[Item]] = {}  # a tile's instructions by what they depend on
    for it in work:
        rows = it.rows
        tiles = _kv_tiles(a, it)

        def masked(n: int, it=it, tiles=tiles) -> bool:
            t0, keys = tiles[n]
            return it.causal and t0 + keys - 1 > it.first_pos

        def step(n: int, in_loop: bool, it=it, tiles=tiles, rows=rows) -> list[Item]:
            t0, keys = tiles[n]
            diagonal = it.first_pos - t0 if masked(n) else None
            key = (rows, keys, diagonal, n == 0)
            if key in made:
                return made[key]
            out = [build("sem.wait", "vec", S_READY),
                   build("v.scale", acc(r.s), acc(r.s), rows, keys, F32, F32, scale)]
            if diagonal is not None:
                out.append(build("v.cmask", acc(r.s), acc(r.s), rows, keys, F32, F32,
                                 diagonal))
            out += _online_softmax(a, r, rows, keys, first=n == 0) + [
                build("sem.signal", "vec", P_READY)]
            made[key] = out
            return out

        first, count = _uniform(len(tiles), lambda n, tiles=tiles: masked(n) or
                                tiles[n][1] < a.tkv)
        seq += step(0, False) + steps(count, step, (), first)
        seq += [i for n in range(first + count, len(tiles)) for i in step(n, False)]
        if it.partial:  # unnormalised O, then the rows' max and sum, all fp32
            seq += [build("sem.wait", "vec", O_FINAL), build("sem.wait", "vec", O_FREE),
                    build("v.cast", sram(r.o_out), acc(r.o), rows, a.hd, F32, F32),
                    build("v.cast", sram(r.o_out + 4 * rows * a.hd), sram(r.m), rows, 1,
                          F32, F32),
                    build("v.cast", sram(r.o_out + 4 * rows * (a.hd + 1)), sram(r.l), rows,
                          1, F32, F32),
                    build("sem.signal", "vec", O_READY)]
            continue
        seq += [build("sem.wait", "vec", O_FINAL),
                build("v.recip", sram(r.l), sram(r.l), rows, 1, F32, F32),
                build("v.mul", acc(r.o), acc(r.o), sram(r.l), rows, a.hd, F32, F32, F32, "col"),
                build("sem.wait", "vec", O_FREE),
                build("v.cast", sram(r.o_out), acc(r.o), rows, a.hd, a.dt, F32)]
        if it.stats is not None:  # m and 1/l after the output rows, stored with them
            at = r.o_out + a.dt.nbytes(rows * a.hd)
            seq += [build("v.cast", sram(at), sram(r.m), 1, rows, F32, F32),
                    build("v.cast", sram(at + 4 * rows), sram(r.l), 1, rows, F32, F32)]
        seq.append(build("sem.signal", "vec", O_READY))
    return seq + [build("sem.wait", "vec", O_FREE)]


def _online_softmax(a: Attention, r: Regions, rows: int, keys: int, first: bool) -> list:
    """m, l and O updated for one score tile S (FlashAttention-2's recurrence)."""
    s, sp = acc(r.s), sram
    if first:
        return [build("v.rmax", sp(r.m), s, rows, keys, F32, F32),
                build("v.sub", s, s, sp(r.m), rows, keys, F32, F32, F32, "col"),
                build("v.exp", s, s, rows, keys, F32, F32),
                build("v.rsum", sp(r.l), s, rows, keys, F32, F32),
                build("v.cast", sp(r.p), s, rows, keys, a.dt, F32)]
    return [build("v.rmax", sp(r.mt), s, rows, keys, F32, F32),
            build("v.max", sp(r.mnew), sp(r.m), sp(r.mt), rows, 1, F32, F32, F32),
            build("v.sub", s, s, sp(r.mnew), rows, keys, F32, F32, F32, "col"),
            build("v.exp", s, s, rows, keys, F32, F32),
            build("v.rsum", sp(r.lt), s, rows, keys, F32, F32),
            build("v.sub", sp(r.corr), sp(r.m), sp(r.mnew), rows, 1, F32, F32, F32),
            build("v.exp", sp(r.corr), sp(r.corr), rows, 1, F32, F32),
            build("v.mul", sp(r.l), sp(r.l), sp(r.corr), rows, 1, F32, F32, F32),
            build("v.add", sp(r.l), sp(r.l), sp(r.lt), rows, 1, F32, F32, F32),
            build("v.cast", sp(r.p), s, rows, keys, a.dt, F32),
            build("v.mul", acc(r.o), acc(r.o), sp(r.corr), rows, a.hd, F32, F32, F32, "col"),
            build("v.cast", sp(r.m), sp(r.mnew), rows, 1, F32, F32)]


__all__ = ["Attention", "attention_programs", "ceil_div", "deal", "items", "kv_parts",
           "regions"]
