"""GEMM kernel: C[M,N] = epilogue(A[M,K] @ W[K,N]) over the cores of a chip.

Output tiles (TM x TN) are dealt round-robin to the cores, so wave quantization and ragged
edge tiles are what the simulator sees, not a correction factor. Per core, a software
pipeline with ``stages`` A/W buffers (DMA prefetches up to stages - 1 K-steps ahead of the
array, hiding the memory latency as multistage TMA pipelines do), two
accumulator tiles (the next tile's MACs overlap this tile's epilogue) and two output
buffers (the store of tile t-1 overlaps tile t). Weights are stored blocked by (TK, TN) in
HBM, so every weight load is one contiguous burst.

Semaphores (all balanced, so kernels can follow each other on a core); the A/W ring uses one
counting semaphore each way, as both engines take the stages in order:
0 A,W full (dma->mx)  2 A,W free (mx->dma)  4/5 acc ready (mx->vec)
6/7 acc free (vec->mx)  8/9 C ready (vec->dma)  10/11 C free (dma->vec)
12 extras full (dma->vec)  13 extras free (vec->dma)
With a weight decode stage (quantized codes -> bf16 on the vector engine, between the DMA
and the array): 14/15 codes full (dma->vec)  16/17 codes free (vec->dma)
18/19 weights decoded (vec->mx)  20/21 decoded buffer free (mx->vec).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from isa import DType, Instruction, build
from mapper.emit import Arena, Item, acc, hbm, sram, steps

FULL, FREE, ACC_READY, ACC_FREE, C_READY, C_FREE, EX_FULL, EX_FREE = 0, 2, 4, 6, 8, 10, 12, 13
WQ_FULL, WQ_FREE, W_DEC, W_FREE = 14, 16, 18, 20
ALIGN = 64


@dataclass(frozen=True)
class Tiling:
    tm: int
    tk: int
    tn: int
    stages: int = 2  # A/W buffers in the load pipeline (a weight decode stage keeps 2)


@dataclass(frozen=True)
class Gemm:
    """One GEMM with its operands' HBM placement and fused epilogue."""

    m: int
    k: int
    n: int
    a: int  # HBM address of A, row-major with leading dimension lda
    w: int  # HBM address of W, blocked by (tk, tn) tiles (see weight_block_offsets)
    c: int  # HBM address of C, row-major with leading dimension ldc
    adt: DType = DType.BF16
    wdt: DType = DType.BF16
    cdt: DType = DType.BF16
    lda: int = 0  # 0: k
    ldc: int = 0  # 0: n
    act: str | None = None  # "gelu" | "silu" | "relu" applied before the residual add
    bias: int | None = None  # HBM address of bias[N] (fp32)
    scale: int | None = None  # HBM address of per-output-channel scales[N] (fp32)
    residual: int | None = None  # HBM address of R[M,N] (cdt, ldc) added last
    row_scale: int | None = None  # HBM address of per-row scales [M, 1] (fp32), applied first
    sparse: bool = False  # W holds 2:4-compressed blocks: values [tk/2, tn] + meta [tk/8, tn]
    # decode stage: "lut" (codes -> table, fp32 at ``table``) or "group" (codes x the fp32
    # scale row stored after each block; one group = one K-step: tk == group)
    decode: str | None = None
    table: int | None = None
    group: int = 0
    w_layout: str = "blocked"  # or "row": W row-major [K, N], a tile is tk runs of tn;
    # or "col": W stored transposed, row-major [N, K] (a data gradient's W^T), read with tw
    a_trans: bool = False  # A stored transposed, row-major [K, M] (a weight gradient's X^T)
    accumulate: bool = False  # the residual is C itself (decided by tensor, not address)
    name: str = "gemm"
    # split-K: this part runs K steps [k_first, k_first + k_count) of the whole GEMM
    # (0: all of them) and writes its fp32 partial sums to C
    k_first: int = 0
    k_count: int = 0
    # KiB the kernel keeps in flight per core (the chip's ``core.dma.gemm_window``): its
    # loads carry it, so their HBM part moves at most window / latency
    window: int = 0
    # batched (strided) GEMM, one launch for ``groups`` independent m x k x n products (a
    # per-head projection, as cuBLAS's strided batched GEMM): group q reads A at
    # a + q * a_stride, W at w + q * w_stride, writes C at c + q * c_stride (bytes)
    groups: int = 1
    a_stride: int = 0
    w_stride: int = 0
    c_stride: int = 0
    # grouped GEMM (MoE experts, one launch): group q is the next group_rows[q] rows of A
    # and C (m is their sum) times its own W; a group of no rows has no tiles
    group_rows: tuple[int, ...] = ()
    extras: tuple[str, ...] = field(init=False, default=())

    @property
    def in_place(self) -> bool:
        """C += A @ W: the residual is C itself (a gradient accumulated in its buffer). Its
        tile is loaded into the C buffer, which the epilogue then overwrites: no buffer of
        its own, as a GEMM library's beta = 1 reads C into the output fragment."""
        return self.residual is not None and self.accumulate

    def __post_init__(self) -> None:
        ex = tuple(x for x, v in (("row_scale", self.row_scale), ("scale", self.scale),
                                  ("bias", self.bias), ("residual", self.residual))
                   if v is not None)
        object.__setattr__(self, "extras", ex)


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def weight_block_bytes(g: Gemm, tk: int, tn: int) -> int:
    if g.sparse:
        return g.wdt.nbytes(tk // 2 * tn) + tk * tn // 8
    if g.decode == "group":
        return g.wdt.nbytes(tk * tn) + 4 * tn  # codes, then the group's scale row
    return g.wdt.nbytes(tk * tn)


def weight_block_offsets(g: Gemm, t: Tiling) -> dict[tuple[int, int], int]:
    """Byte offset of each (k-block, n-block) in the blocked layout: n-block major, k minor,
    so one core's stream over k for its tile column is one ascending run. (Row-major: the
    offset of the tile's first element.) Shared, read-only: computed once per weight shape
    and tiling (a model's layers and decode steps ask again and again)."""
    return _offsets(g.k, g.n, g.wdt, g.sparse, g.decode, g.w_layout, t)


@functools.lru_cache(maxsize=512)
def _offsets(k: int, n: int, wdt: DType, sparse: bool, decode: str | None, layout: str,
             t: Tiling) -> dict[tuple[int, int], int]:
    if layout in ("row", "col"):  # W [K, N] or W^T stored as [N, K]
        return {(kb, nb): wdt.nbytes(kb * t.tk * n + nb * t.tn if layout == "row" else
                                     nb * t.tn * k + kb * t.tk)
                for nb in range(ceil_div(n, t.tn)) for kb in range(ceil_div(k, t.tk))}
    shape = Gemm(m=1, k=k, n=n, a=0, w=0, c=0, adt=wdt, wdt=wdt, cdt=wdt, sparse=sparse,
                 decode=decode)
    offs, pos = {}, 0
    for nb in range(ceil_div(n, t.tn)):
        tn = min(t.tn, n - nb * t.tn)
        full = weight_block_bytes(shape, t.tk, tn)
        for kb in range(ceil_div(k, t.tk)):
            tk = min(t.tk, k - kb * t.tk)
            offs[(kb, nb)] = pos
            pos += full if tk == t.tk else weight_block_bytes(shape, tk, tn)
    return offs


@dataclass(frozen=True)
class SramPlan:
    a: tuple[int, ...]  # one per stage
    w: tuple[int, ...]
    c: tuple[int, int]
    ex: dict[str, int]
    acc: tuple[int, int]
    sram_bytes: int
    acc_bytes: int
    dec: tuple[int, int]  # what the array reads: the decoded tiles, or w itself
    table: int


def plan_sram(g: Gemm, t: Tiling) -> SramPlan:
    """Regions for the double buffers; the caller checks them against the core's memories."""
    arena = Arena(ALIGN)
    take = arena.take

    n = stages(g, t)
    a = tuple(take(g.adt.nbytes(t.tm * t.tk)) for _ in range(n))
    wb = weight_block_bytes(g, t.tk, t.tn)
    w = tuple(take(wb) for _ in range(n))
    if g.decode:  # w holds the codes; dec the decoded bf16 tiles the array reads
        dec = (take(g.adt.nbytes(t.tk * t.tn)), take(g.adt.nbytes(t.tk * t.tn)))
        table = take(4 << g.wdt.bits) if g.decode == "lut" else -1
    else:
        dec, table = w, -1
    c = (take(g.cdt.nbytes(t.tm * t.tn)), take(g.cdt.nbytes(t.tm * t.tn)))
    ex = {"row_scale": take(4 * t.tm) if g.row_scale is not None else -1,
          "scale": take(4 * t.tn) if g.scale is not None else -1,
          "bias": take(4 * t.tn) if g.bias is not None else -1,
          "residual": take(g.cdt.nbytes(t.tm * t.tn)) if g.residual is not None
          and not g.in_place else -1}
    acc_tile = 4 * t.tm * t.tn
    return SramPlan(a, w, c, ex, (0, acc_tile), arena.size, 2 * acc_tile, dec, table)


def gemm_programs(g: Gemm, t: Tiling, cores: int) -> list[list[Item]]:
    """Per-core instruction lists: prologue tokens, then the DMA, MX and VEC sequences.
    A batched GEMM's row tiles run group after group (``i`` counts over all groups)."""
    rows = len(_row_tiles(g.group_rows, t.tm)) if g.group_rows else \
        ceil_div(g.m, t.tm) * g.groups
    tiles = [(i, j) for j in range(ceil_div(g.n, t.tn)) for i in range(rows)]
    plan = plan_sram(g, t)
    offs = weight_block_offsets(g, t)
    out: list[list[Item]] = []
    for core in range(min(cores, len(tiles))):
        mine = tiles[core::cores]
        out.append(_prologue(g, t) + _dma(g, t, plan, offs, mine) + _mx(g, t, plan, mine)
                   + _vec(g, t, plan, mine))
    return out


def stages(g: Gemm, t: Tiling) -> int:
    """A/W pipeline depth: the tiling's, or 2 where a weight decode stage pairs with it."""
    return 2 if g.decode else max(2, t.stages)


def _prologue(g: Gemm, t: Tiling) -> list[Item]:
    """Initial tokens: every A/W buffer, both accumulators, both C buffers start free."""
    seq = [build("sem.signal", "mx", FREE)] * stages(g, t) + [
           build("sem.signal", "vec", ACC_FREE), build("sem.signal", "vec", ACC_FREE + 1),
           build("sem.signal", "dma", C_FREE), build("sem.signal", "dma", C_FREE + 1)]
    if g.extras:
        seq.append(build("sem.signal", "vec", EX_FREE))
    if g.decode:
        seq += [build("sem.signal", "mx", W_FREE), build("sem.signal", "mx", W_FREE + 1),
                build("sem.signal", "vec", WQ_FREE), build("sem.signal", "vec", WQ_FREE + 1)]
    return seq


def _shape(g: Gemm, t: Tiling, i: int, j: int) -> tuple[int, int, int]:
    """(tm, tn, number of k steps) of output tile (i, j)."""
    q, sub = _group(g, t, i)
    rows = g.group_rows[q] if g.group_rows else g.m
    return (min(t.tm, rows - sub * t.tm), min(t.tn, g.n - j * t.tn),
            g.k_count or ceil_div(g.k, t.tk))


@functools.lru_cache(maxsize=256)
def _row_tiles(group_rows: tuple[int, ...], tm: int) -> tuple[tuple[int, int, int], ...]:
    """(group, row tile in it, first row of the group) of each row tile of a grouped GEMM."""
    out, first = [], 0
    for q, rows in enumerate(group_rows):
        out += [(q, sub, first) for sub in range(ceil_div(rows, tm))]
        first += rows
    return tuple(out)


def _group(g: Gemm, t: Tiling, i: int) -> tuple[int, int]:
    """(group, row tile within it) of row tile ``i``."""
    if g.group_rows:
        q, sub, _ = _row_tiles(g.group_rows, t.tm)[i]
        return q, sub
    return divmod(i, ceil_div(g.m, t.tm)) if g.groups > 1 else (0, i)


def _group_rows_before(g: Gemm, t: Tiling, i: int) -> int:
    """Rows of A and C before row tile ``i``'s group (grouped GEMMs; else 0)."""
    return _row_tiles(g.group_rows, t.tm)[i][2] if g.group_rows else 0


def _ends_ragged(g: Gemm, t: Tiling) -> bool:
    """This part's last K step is the GEMM's last, and it is short."""
    return bool(g.k % t.tk) and g.k_first + (g.k_count or ceil_div(g.k, t.tk)) == \
        ceil_div(g.k, t.tk)


def _dma(g: Gemm, t: Tiling, p: SramPlan, offs: dict, tiles: list) -> list[Item]:
    """Loads for every k step; the store of tile t-1 and the epilogue operands of tile t go
    after tile t's first ``stages`` loads, so neither holds up the array."""
    lda = g.lda or (g.m if g.a_trans else g.k)
    n = stages(g, t)
    seq: list[Item] = []
    if g.decode == "lut":
        seq.append(build("dma.load", sram(p.table), hbm(g.table), DType.FP32, 1,
                         1 << g.wdt.bits))
    gstep = 0
    prev: tuple | None = None
    for n_tile, (i, j) in enumerate(tiles):
        tm, tn, ksteps = _shape(g, t, i, j)
        grp, sub = _group(g, t, i)
        a_row = g.a + grp * g.a_stride + g.adt.nbytes(
            (_group_rows_before(g, t, i) + sub * t.tm) * (1 if g.a_trans else lda))
        w_base = g.w + grp * g.w_stride

        def step(k: int, in_loop: bool, tm=tm, tn=tn, j=j, a_row=a_row, w_base=w_base,
                 g0=gstep) -> list:
            kk = k - g0 + g.k_first  # the K step of the whole GEMM
            tk = min(t.tk, g.k - kk * t.tk)
            b = k % n
            a_reg, w_reg = (0, 1) if in_loop else (None, None)
            dec = bool(g.decode)
            return [build("sem.wait", "dma", FREE),
                    *([build("sem.wait", "dma", WQ_FREE + b)] if dec else []),
                    _a_load(g, p, b, a_row, kk * t.tk, a_reg, tm, tk, lda),
                    *_w_load(g, p, b, w_base + offs[(kk, j)], w_reg, tk, tn),
                    build("sem.signal", "dma", FULL),
                    *([build("sem.signal", "dma", WQ_FULL + b)] if dec else [])]

        head = min(n, ksteps)
        seq += steps(head, step, (), gstep, n)
        if prev is not None:
            seq += _store(g, t, p, *prev)
        if g.extras:  # after the first steps: the previous epilogue frees the buffer then
            seq += _extras_load(g, t, p, i, j, tm, tn, n_tile % 2)
        ragged = 1 if _ends_ragged(g, t) and ksteps > head else 0
        full = ksteps - head - ragged
        block = {"row": g.wdt.nbytes(t.tk * g.n), "col": g.wdt.nbytes(t.tk)}.get(
            g.w_layout, weight_block_bytes(g, t.tk, tn))
        a_step = g.adt.nbytes(t.tk * (lda if g.a_trans else 1))
        seq += steps(full, step, (("a0", n * a_step), ("a1", n * block)),
                     gstep + head, n)
        if ragged:
            seq += step(gstep + ksteps - 1, False)
        gstep += ksteps
        prev = (n_tile % 2, i, j, tm, tn)
    if prev is not None:
        seq += _store(g, t, p, *prev)
    seq.append(build("sem.wait", "dma", FREE, n))
    if g.decode:
        seq += [build("sem.wait", "dma", WQ_FREE), build("sem.wait", "dma", WQ_FREE + 1)]
    if g.extras:
        seq.append(build("sem.wait", "dma", EX_FREE))
    return seq


def _a_load(g: Gemm, p: SramPlan, b: int, a_row: int, k0: int, reg: int | None, tm: int,
            tk: int, lda: int) -> Instruction:
    """The A tile of a K step: tm runs of tk, or (A stored transposed) tk runs of tm."""
    if g.a_trans:
        return build("dma.load", sram(p.a[b]), hbm(a_row + g.adt.nbytes(k0 * lda), reg),
                     g.adt, tk, tm, stride=lda, window=g.window)
    return build("dma.load", sram(p.a[b]), hbm(a_row + g.adt.nbytes(k0), reg), g.adt, tm, tk,
                 stride=lda, window=g.window)


def _w_load(g: Gemm, p: SramPlan, b: int, addr: int, reg: int | None, tk: int,
            tn: int) -> list[Instruction]:
    win = g.window
    if g.decode == "group":  # the codes and the scale row right after them
        return [build("dma.load", sram(p.w[b]), hbm(addr, reg), g.wdt, tk, tn, window=win),
                build("dma.load", sram(p.w[b] + g.wdt.nbytes(tk * tn)),
                      hbm(addr + g.wdt.nbytes(tk * tn), reg), DType.FP32, 1, tn, window=win)]
    if g.w_layout == "row":
        return [build("dma.load", sram(p.w[b]), hbm(addr, reg), g.wdt, tk, tn, stride=g.n,
                      window=win)]
    if g.w_layout == "col":
        return [build("dma.load", sram(p.w[b]), hbm(addr, reg), g.wdt, tn, tk, stride=g.k,
                      window=win)]
    if not g.sparse:
        return [build("dma.load", sram(p.w[b]), hbm(addr, reg), g.wdt, tk, tn, window=win)]
    vals = g.wdt.nbytes(tk // 2 * tn)
    return [build("dma.load", sram(p.w[b]), hbm(addr, reg), g.wdt, tk // 2, tn, window=win),
            build("dma.load", sram(p.w[b] + vals), hbm(addr + vals, reg), DType.INT8, tk // 8,
                  tn, window=win)]


def _extras_load(g: Gemm, t: Tiling, p: SramPlan, i: int, j: int, tm: int,
                 tn: int, par: int = 0) -> list[Item]:
    ldc = g.ldc or g.n
    seq: list[Item] = [build("sem.wait", "dma", EX_FREE)]
    if g.row_scale is not None:
        row0 = _group_rows_before(g, t, i) + _group(g, t, i)[1] * t.tm if g.group_rows \
            else i * t.tm
        seq.append(build("dma.load", sram(p.ex["row_scale"]), hbm(g.row_scale + 4 * row0),
                         DType.FP32, tm, 1))
    grp = _group(g, t, i)[0]  # a grouped GEMM's groups each have their N channels' scales
    for name in ("scale", "bias"):
        base = getattr(g, name)
        if base is not None:
            seq.append(build("dma.load", sram(p.ex[name]),
                             hbm(base + 4 * (grp * g.n * (g.groups > 1) + j * t.tn)),
                             DType.FP32, 1, tn))
    if g.residual is not None:
        addr = g.residual + g.cdt.nbytes(i * t.tm * ldc + j * t.tn)
        dst = p.c[par] if g.in_place else p.ex["residual"]  # C's buffer is free: stored
        seq.append(build("dma.load", sram(dst), hbm(addr), g.cdt, tm, tn, stride=ldc))
    return seq + [build("sem.signal", "dma", EX_FULL)]


def _store(g: Gemm, t: Tiling, p: SramPlan, par: int, i: int, j: int, tm: int,
           tn: int) -> list[Item]:
    ldc = g.ldc or g.n
    grp, sub = _group(g, t, i)
    addr = g.c + grp * g.c_stride + g.cdt.nbytes(
        (_group_rows_before(g, t, i) + sub * t.tm) * ldc + j * t.tn)
    return [build("sem.wait", "dma", C_READY + par),
            build("dma.store", hbm(addr), sram(p.c[par]), g.cdt, tm, tn, stride=ldc),
            build("sem.signal", "dma", C_FREE + par)]


def _mx(g: Gemm, t: Tiling, p: SramPlan, tiles: list) -> list[Item]:
    seq: list[Item] = []
    gstep = 0
    n = stages(g, t)
    flags = (("sp24",) if g.sparse else ()) + (("ta",) if g.a_trans else ()) + \
        (("tw",) if g.w_layout == "col" else ())
    made: dict[tuple, list[Item]] = {}  # a tile's instructions by what they depend on
    for n_tile, (i, j) in enumerate(tiles):
        tm, tn, ksteps = _shape(g, t, i, j)
        par = n_tile % 2
        key = (tm, tn, ksteps, par, gstep % n)
        if key in made:
            seq += made[key]
            gstep += ksteps
            continue

        def step(k: int, in_loop: bool, tm=tm, tn=tn, par=par, g0=gstep) -> list:
            kk = k - g0
            tk = min(t.tk, g.k - (kk + g.k_first) * t.tk)
            b = k % n
            f = flags + (("accum",) if kk else ())
            dec = bool(g.decode)
            return [build("sem.wait", "mx", FULL),
                    *([build("sem.wait", "mx", W_DEC + b)] if dec else []),
                    build("mm", acc(p.acc[par]), sram(p.a[b]), sram(p.dec[b]), tm, tk, tn, g.adt,
                          g.adt if dec else g.wdt, "|".join(f) or 0),
                    build("sem.signal", "mx", FREE),
                    *([build("sem.signal", "mx", W_FREE + b)] if dec else [])]

        tile = [build("sem.wait", "mx", ACC_FREE + par), *step(gstep, False)]
        ragged = 1 if _ends_ragged(g, t) and ksteps > 1 else 0
        tile += steps(ksteps - 1 - ragged, step, (), gstep + 1, n)
        if ragged:
            tile += step(gstep + ksteps - 1, False)
        tile.append(build("sem.signal", "mx", ACC_READY + par))
        made[key] = tile
        seq += tile
        gstep += ksteps
    return seq + [build("sem.wait", "mx", ACC_FREE), build("sem.wait", "mx", ACC_FREE + 1)]


def _vec(g: Gemm, t: Tiling, p: SramPlan, tiles: list) -> list[Item]:
    """Weight decodes (if any) for every K-step, and each tile's epilogue after the first
    two decodes of the next tile, so the array never waits on an epilogue."""
    seq: list[Item] = []
    gstep = 0
    prev: tuple | None = None
    made: dict[tuple, list[Item]] = {}  # epilogues by (buffer, tm, tn)

    def epilogue(par: int, tm: int, tn: int) -> list[Item]:
        out = made.get((par, tm, tn))
        if out is None:
            out = made[(par, tm, tn)] = _epilogue(g, p, par, tm, tn)
        return out
    for n_tile, (i, j) in enumerate(tiles):
        tm, tn, ksteps = _shape(g, t, i, j)
        if not g.decode:  # the previous tile's epilogue first
            if prev is not None:
                seq += epilogue(*prev)
            prev = (n_tile % 2, tm, tn)
            continue
        for kk in range(ksteps):
            seq += _decode(g, t, p, (gstep + kk) % 2, min(t.tk, g.k - kk * t.tk), tn)
            if prev is not None and kk == min(1, ksteps - 1):
                seq += epilogue(*prev)
                prev = None
        gstep += ksteps
        prev = (n_tile % 2, tm, tn)
    if prev is not None:
        seq += epilogue(*prev)
    seq += [build("sem.wait", "vec", C_FREE), build("sem.wait", "vec", C_FREE + 1)]
    if g.decode:  # the decoded buffers' last free tokens (signalled by mx)
        seq += [build("sem.wait", "vec", W_FREE), build("sem.wait", "vec", W_FREE + 1)]
    return seq


def _decode(g: Gemm, t: Tiling, p: SramPlan, b: int, tk: int, tn: int) -> list[Item]:
    """Codes -> bf16 tile: a table lookup, or codes x the group's scale row."""
    src, dst = sram(p.w[b]), sram(p.dec[b])
    if g.decode == "lut":
        op = build("v.lut", dst, src, sram(p.table), tk, tn, g.adt, g.wdt)
    else:
        scales = sram(p.w[b] + g.wdt.nbytes(tk * tn))
        op = build("v.mul", dst, src, scales, tk, tn, g.adt, g.wdt, DType.FP32, "row")
    return [build("sem.wait", "vec", WQ_FULL + b), build("sem.wait", "vec", W_FREE + b), op,
            build("sem.signal", "vec", WQ_FREE + b), build("sem.signal", "vec", W_DEC + b)]


def _epilogue(g: Gemm, p: SramPlan, par: int, tm: int, tn: int) -> list[Item]:
    """Row scale, channel scale, bias, activation (in the accumulator, fp32 after the first
    op — int32 products of integer operands are converted by it), residual, cast."""
    x = acc(p.acc[par])
    f32 = DType.FP32
    cur = DType.INT32 if not (g.adt.is_float or g.wdt.is_float or g.decode) else f32
    seq: list[Item] = [build("sem.wait", "vec", ACC_READY + par),
                       build("sem.wait", "vec", C_FREE + par)]
    if g.extras:
        seq.append(build("sem.wait", "vec", EX_FULL))
    for name, bcast in (("row_scale", "col"), ("scale", "row"), ("bias", "row")):
        if getattr(g, name) is not None:
            op = "v.add" if name == "bias" else "v.mul"
            seq.append(build(op, x, x, sram(p.ex[name]), tm, tn, f32, cur, f32, bcast))
            cur = f32
    if g.act:
        seq.append(build(f"v.{g.act}", x, x, tm, tn, f32, cur))
        cur = f32
    out = sram(p.c[par])
    if g.residual is not None:
        res = out if g.in_place else sram(p.ex["residual"])
        seq.append(build("v.add", out, x, res, tm, tn, g.cdt, cur, g.cdt))
    else:
        seq.append(build("v.cast", out, x, tm, tn, g.cdt, cur))
    if g.extras:
        seq.append(build("sem.signal", "vec", EX_FREE))
    return seq + [build("sem.signal", "vec", ACC_FREE + par),
                  build("sem.signal", "vec", C_READY + par)]


SPLIT_MIN_STEPS = 4  # K steps each part of a split GEMM keeps, so its loads still pipeline
SPLIT_MAX = 16  # parts at most (libraries' split-K factors; the partial sums' traffic grows)


def k_splits(g: Gemm, t: Tiling, cores: int) -> int:
    """Parts a GEMM's K is split into (split-K): when its output tiles would leave at least
    half the cores idle, each tile's K range is cut so that tiles x parts fill the cores,
    keeping ``SPLIT_MIN_STEPS`` K steps a part; as GPU libraries do for few output tiles and
    a long K. Plain GEMMs only (an epilogue, a decode stage or 2:4 weights keep one part)."""
    if g.decode or g.sparse or g.extras or g.act or g.k_count or g.groups > 1:
        return 1
    tiles = ceil_div(g.m, t.tm) * ceil_div(g.n, t.tn)
    if 2 * tiles > cores:
        return 1
    return max(1, min(cores // tiles, ceil_div(g.k, t.tk) // SPLIT_MIN_STEPS, SPLIT_MAX))


def sram_fits(g: Gemm, t: Tiling, sram_capacity: int, acc_capacity: int) -> bool:
    p = plan_sram(g, t)
    return p.sram_bytes <= sram_capacity and p.acc_bytes <= acc_capacity and (
        not g.sparse or t.tk % 8 == 0) and (g.decode != "group" or t.tk == g.group)


def gemm_flops(g: Gemm) -> int:
    return 2 * g.m * g.k * g.n


__all__ = ["Gemm", "Tiling", "gemm_programs", "k_splits", "plan_sram", "sram_fits",
           "weight_block_offsets"]
