"""Softmax cross-entropy's gradient over a vocabulary too wide for a core's SRAM.

dL/dlogits = softmax(logits) - onehot(target) per row. A row tile is streamed twice in
column blocks: pass one keeps the running max m and sum l (the online softmax of flash
attention), pass two writes exp(x - m) / l block by block. The one-hot subtraction touches
one element per row and is left out (its traffic is a row's worth of bytes in millions).
Row tiles are dealt round-robin to the cores; loads of block k+1 overlap the math of k.

Semaphores: 0/1 block full (dma->vec), 2/3 block free (vec->dma), 4/5 out ready
(vec->dma), 6/7 out free (dma->vec).
"""

from __future__ import annotations

from dataclasses import dataclass

from isa import DType, build
from mapper.emit import Arena, Item, hbm, sram, steps

IN_FULL, IN_FREE, OUT_READY, OUT_FREE = 0, 2, 4, 6
F32 = DType.FP32


@dataclass(frozen=True)
class CrossEntropy:
    rows: int
    vocab: int
    logits: int  # HBM address of logits [rows, vocab]
    grad: int  # HBM address of dL/dlogits [rows, vocab] (may equal logits)
    dt: DType = DType.BF16  # of logits and gradient
    rows_per_tile: int = 8
    block: int = 2048  # columns per block


@dataclass(frozen=True)
class _Regions:
    x: tuple[int, int]
    out: tuple[int, int]
    s: int
    m: int
    mt: int
    mn: int
    corr: int
    l: int  # noqa: E741
    lt: int
    size: int


def regions(c: CrossEntropy) -> _Regions:
    a = Arena(64)
    t = a.take
    r, w = c.rows_per_tile, c.block
    x = (t(c.dt.nbytes(r * w)), t(c.dt.nbytes(r * w)))
    out = (t(c.dt.nbytes(r * w)), t(c.dt.nbytes(r * w)))
    return _Regions(x, out, t(4 * r * w), *(t(4 * r) for _ in range(6)), a.size)


def fit(c: CrossEntropy, sram_capacity: int) -> CrossEntropy:
    """Halve the block (then the rows per tile) until the buffers fit the SRAM."""
    from dataclasses import replace

    while regions(c).size > sram_capacity and c.block > 64:
        c = replace(c, block=c.block // 2)
    while regions(c).size > sram_capacity and c.rows_per_tile > 1:
        c = replace(c, rows_per_tile=c.rows_per_tile // 2)
    return c


def cross_entropy_programs(c: CrossEntropy, cores: int) -> list[list[Item]]:
    tiles = list(range(0, c.rows, c.rows_per_tile))
    reg = regions(c)
    out = []
    for core in range(min(cores, len(tiles))):
        mine = tiles[core::cores]
        out.append([build("sem.signal", "vec", IN_FREE), build("sem.signal", "vec", IN_FREE + 1),
                    build("sem.signal", "dma", OUT_FREE), build("sem.signal", "dma", OUT_FREE + 1)]
                   + _dma(c, reg, mine) + _vec(c, reg, mine))
    return out


def _blocks(c: CrossEntropy) -> list[int]:
    return [min(c.block, c.vocab - c0) for c0 in range(0, c.vocab, c.block)]


def _run(widths: list[int], step, g: int, regs) -> list[Item]:  # noqa: ANN001
    """Steps for every block: the first and a ragged last apart, the uniform middle looped."""
    n = len(widths)
    ragged = 1 if n > 1 and widths[-1] < widths[0] else 0
    seq = step(g, False)
    seq += steps(n - 1 - ragged, step, regs, g + 1)
    if ragged:
        seq += step(g + n - 1, False)
    return seq


def _dma(c: CrossEntropy, r: _Regions, tiles: list[int]) -> list[Item]:
    widths = _blocks(c)
    e = c.dt.nbytes(1)
    seq: list[Item] = []
    g = 0
    for r0 in tiles:
        rows = min(c.rows_per_tile, c.rows - r0)
        base = r0 * c.vocab * e

        def load(k: int, in_loop: bool, g0: int, base=base, rows=rows) -> list[Item]:
            j = k - g0
            b = k % 2
            reg = 0 if in_loop else None
            return [build("sem.wait", "dma", IN_FREE + b),
                    build("dma.load", sram(r.x[b]), hbm(c.logits + base + j * c.block * e, reg),
                          c.dt, rows, widths[j], stride=c.vocab),
                    build("sem.signal", "dma", IN_FULL + b)]

        def load_store(k: int, in_loop: bool, g0: int, base=base, rows=rows) -> list[Item]:
            j = k - g0
            b = k % 2
            reg = 0 if in_loop else None
            return load(k, in_loop, g0) + [
                build("sem.wait", "dma", OUT_READY + b),
                build("dma.store", hbm(c.grad + base + j * c.block * e, reg), sram(r.out[b]),
                      c.dt, rows, widths[j], stride=c.vocab),
                build("sem.signal", "dma", OUT_FREE + b)]

        step_bytes = 2 * c.block * e
        seq += _run(widths, lambda k, il, g0=g: load(k, il, g0), g, (("a0", step_bytes),))
        g += len(widths)
        seq += _run(widths, lambda k, il, g0=g: load_store(k, il, g0), g,
                    (("a0", step_bytes),))
        g += len(widths)
    return seq + [build("sem.wait", "dma", IN_FREE), build("sem.wait", "dma", IN_FREE + 1)]


def _vec(c: CrossEntropy, r: _Regions, tiles: list[int]) -> list[Item]:
    widths = _blocks(c)
    seq: list[Item] = []
    g = 0
    s, m, l, dt = sram(r.s), sram(r.m), sram(r.l), c.dt  # noqa: E741
    for r0 in tiles:
        rows = min(c.rows_per_tile, c.rows - r0)

        def stats(k: int, in_loop: bool, g0: int, rows=rows) -> list[Item]:
            w, b = widths[k - g0], k % 2
            x = sram(r.x[b])
            head = [build("sem.wait", "vec", IN_FULL + b)]
            if k == g0:
                body = [build("v.rmax", m, x, rows, w, F32, dt),
                        build("v.sub", s, x, m, rows, w, F32, dt, F32, "col"),
                        build("sem.signal", "vec", IN_FREE + b),
                        build("v.exp", s, s, rows, w, F32, F32),
                        build("v.rsum", l, s, rows, w, F32, F32)]
                return head + body
            mt, mn, corr, lt = (sram(a) for a in (r.mt, r.mn, r.corr, r.lt))
            return head + [
                build("v.rmax", mt, x, rows, w, F32, dt),
                build("v.max", mn, m, mt, rows, 1, F32, F32, F32),
                build("v.sub", s, x, mn, rows, w, F32, dt, F32, "col"),
                build("sem.signal", "vec", IN_FREE + b),
                build("v.exp", s, s, rows, w, F32, F32),
                build("v.rsum", lt, s, rows, w, F32, F32),
                build("v.sub", corr, m, mn, rows, 1, F32, F32, F32),
                build("v.exp", corr, corr, rows, 1, F32, F32),
                build("v.mul", l, l, corr, rows, 1, F32, F32, F32),
                build("v.add", l, l, lt, rows, 1, F32, F32, F32),
                build("v.cast", m, mn, rows, 1, F32, F32)]

        def grads(k: int, in_loop: bool, g0: int, rows=rows) -> list[Item]:
            w, b = widths[k - g0], k % 2
            return [build("sem.wait", "vec", IN_FULL + b), build("sem.wait", "vec", OUT_FREE + b),
                    build("v.sub", s, sram(r.x[b]), m, rows, w, F32, dt, F32, "col"),
                    build("sem.signal", "vec", IN_FREE + b),
                    build("v.exp", s, s, rows, w, F32, F32),
                    build("v.mul", sram(r.out[b]), s, l, rows, w, dt, F32, F32, "col"),
                    build("sem.signal", "vec", OUT_READY + b)]

        seq += _run(widths, lambda k, il, g0=g: stats(k, il, g0), g, ())
        g += len(widths)
        seq.append(build("v.recip", l, l, rows, 1, F32, F32))
        seq += _run(widths, lambda k, il, g0=g: grads(k, il, g0), g, ())
        g += len(widths)
    return seq + [build("sem.wait", "vec", OUT_FREE), build("sem.wait", "vec", OUT_FREE + 1)]


__all__ = ["CrossEntropy", "cross_entropy_programs", "fit"]
