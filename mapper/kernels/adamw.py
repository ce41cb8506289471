"""AdamW over a flat parameter shard: one fused element-wise kernel (DMA and vector only).

Per element, fp32: m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
p = p (1 - lr wd) - (lr / c1) m / sqrt(v / c2 + eps^2)  (c1, c2 the bias corrections;
eps inside the root, one rsqrt instead of a root and a divide). Reads p, g, m, v and writes
p, m, v (28 bytes per parameter), plus the bf16 copy of p when the model computes in bf16
from fp32 master weights (``copy``: 2 more). Chunks of ``block`` elements, as rows of
``block / width`` x ``width``, are dealt round-robin to the cores, loads of chunk c+1
overlapping the math of chunk c.

Semaphores: 0/1 chunk loaded (dma->vec), 2/3 chunk free (vec->dma), 4/5 updated (vec->dma),
6/7 stored (dma->vec).
"""

from __future__ import annotations

from dataclasses import dataclass

from isa import DType, build
from mapper.emit import Arena, Item, hbm, sram, steps

FULL, FREE, DONE, STORED = 0, 2, 4, 6
F32 = DType.FP32
WIDTH = 256  # elements per row of a chunk (a chunk is rows x WIDTH)


@dataclass(frozen=True)
class AdamW:
    n: int  # parameters in this shard
    p: int  # HBM addresses of the fp32 arrays
    g: int
    m: int
    v: int
    copy: int | None = None  # bf16 parameters written after the update (None: none)
    const: int = 0  # HBM address of the fp32 constant eps^2 (one element)
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    weight_decay: float = 0.1
    step: int = 1
    block: int = 4096  # elements per chunk


def _regions(a: AdamW) -> tuple[list[dict[str, int]], int, int]:
    arena = Arena(64)
    b = 4 * a.block
    bufs = [{k: arena.take(b) for k in ("p", "g", "m", "v", "t")} for _ in range(2)]
    half = arena.take(2 * a.block) if a.copy is not None else -1
    for buf in bufs:
        buf["eps"] = arena.take(4) if "eps" not in bufs[0] else bufs[0]["eps"]
    return bufs, half, arena.size


def sram_bytes(a: AdamW) -> int:
    return _regions(a)[2]


def adamw_programs(a: AdamW, cores: int) -> list[list[Item]]:
    chunks = [(c0, min(a.block, a.n - c0)) for c0 in range(0, a.n, a.block)]
    bufs, half, _ = _regions(a)
    progs = []
    for core in range(min(cores, len(chunks))):
        mine = chunks[core::cores]
        progs.append([build("sem.signal", "vec", FREE), build("sem.signal", "vec", FREE + 1),
                      build("sem.signal", "dma", STORED), build("sem.signal", "dma", STORED + 1)]
                     + _dma(a, bufs, half, mine) + _vec(a, bufs, half, mine))
    return progs


def _shape(n: int) -> tuple[int, int]:
    """A chunk of n elements as rows x cols (one row when it does not divide)."""
    return (n // WIDTH, WIDTH) if n % WIDTH == 0 else (1, n)


def _dma(a: AdamW, bufs, half: int, chunks) -> list[Item]:  # noqa: ANN001
    """Loads of chunk k, then the stores of chunk k - 1; the uniform chunks in a loop whose
    registers step every fp32 array (a0) and the bf16 copy (a1) by one chunk each."""
    seq: list[Item] = [build("dma.load", sram(bufs[0]["eps"]), hbm(a.const), F32, 1, 1)]
    stride = chunks[1][0] - chunks[0][0] if len(chunks) > 1 else 0

    def step(k: int, in_loop: bool) -> list[Item]:
        c0, n = chunks[k]
        b = k % 2
        rows, cols = _shape(n)
        r0, r1 = (0, 1) if in_loop else (None, None)
        out: list[Item] = [build("sem.wait", "dma", FREE + b)]
        for key in ("p", "g", "m", "v"):
            out.append(build("dma.load", sram(bufs[b][key]), hbm(getattr(a, key) + 4 * c0, r0),
                             F32, rows, cols))
        out.append(build("sem.signal", "dma", FULL + b))
        if k:
            out += _stores(a, bufs, half, k - 1, *chunks[k - 1], r0, r1)
        return out

    uniform = len(chunks) - (1 if chunks[-1][1] != a.block else 0)
    seq += step(0, False) if chunks else []
    seq += steps(max(0, uniform - 1), step, (("a0", 8 * stride), ("a1", 4 * stride)), 1)
    seq += [i for k in range(max(1, uniform), len(chunks)) for i in step(k, False)]
    if chunks:
        seq += _stores(a, bufs, half, len(chunks) - 1, *chunks[-1])
    return seq + [build("sem.wait", "dma", FREE), build("sem.wait", "dma", FREE + 1)]


def _stores(a: AdamW, bufs, half: int, i: int, c0: int, n: int,  # noqa: ANN001
            r0: int | None = None, r1: int | None = None) -> list[Item]:
    b = i % 2
    rows, cols = _shape(n)
    seq: list[Item] = [build("sem.wait", "dma", DONE + b)]
    for k in ("p", "m", "v"):
        seq.append(build("dma.store", hbm(getattr(a, k) + 4 * c0, r0), sram(bufs[b][k]), F32,
                         rows, cols))
    if a.copy is not None:
        seq.append(build("dma.store", hbm(a.copy + 2 * c0, r1), sram(half), DType.BF16, rows,
                         cols))
    return seq + [build("sem.signal", "dma", STORED + b)]


def tile_op(mn: str, rows: int, cols: int, dst, x, y=None, s: float | None = None):  # noqa: ANN001, ANN201
    """An fp32 vector instruction on a rows x cols tile: ``dst = x op y``, or ``x op s``
    with a scalar, or ``op(x)``."""
    if s is not None:
        return build(mn, dst, x, rows, cols, F32, F32, s)
    if y is None:
        return build(mn, dst, x, rows, cols, F32, F32)
    return build(mn, dst, x, y, rows, cols, F32, F32, F32)


def update_ops(a: AdamW, rows: int, cols: int, p, g, m, v, t, eps_sq) -> list:  # noqa: ANN001
    """AdamW's arithmetic on one tile (every array fp32, updated in place; ``t`` a temporary;
    ``eps_sq(t)`` the instruction adding eps^2 to ``t``): shared by Tessera's fused kernel
    and PyTorch's (``mapper.kernels.multi_tensor``)."""
    b1, b2 = a.betas
    c1, c2 = 1 - b1 ** a.step, 1 - b2 ** a.step

    def op(mn: str, dst, x, y=None, s=None):  # noqa: ANN001, ANN202
        return tile_op(mn, rows, cols, dst, x, y, s)
    return [op("v.scale", m, m, s=b1), op("v.scale", t, g, s=1 - b1), op("v.add", m, m, t),
            op("v.mul", t, g, g), op("v.scale", t, t, s=1 - b2), op("v.scale", v, v, s=b2),
            op("v.add", v, v, t),
            op("v.scale", t, v, s=1 / c2), eps_sq(t),
            op("v.rsqrt", t, t), op("v.mul", t, t, m), op("v.scale", t, t, s=a.lr / c1),
            op("v.scale", p, p, s=1 - a.lr * a.weight_decay), op("v.sub", p, p, t)]


def _vec(a: AdamW, bufs, half: int, chunks) -> list[Item]:  # noqa: ANN001
    def step(k: int, in_loop: bool) -> list[Item]:
        b = k % 2
        rows, cols = _shape(chunks[k][1])
        p, g, m, v, t = (sram(bufs[b][key]) for key in ("p", "g", "m", "v", "t"))
        eps = sram(bufs[b]["eps"])
        seq = [build("sem.wait", "vec", FULL + b), build("sem.wait", "vec", STORED + b)]
        seq += update_ops(a, rows, cols, p, g, m, v, t, lambda t: build(
            "v.add", t, t, eps, rows, cols, F32, F32, F32, "scalar"))
        if a.copy is not None:
            seq.append(build("v.cast", sram(half), p, rows, cols, DType.BF16, F32))
        return seq + [build("sem.signal", "vec", FREE + b), build("sem.signal", "vec", DONE + b)]

    uniform = len(chunks) - (1 if chunks and chunks[-1][1] != a.block else 0)
    seq = steps(uniform, step, ())
    seq += [i for k in range(uniform, len(chunks)) for i in step(k, False)]
    return seq + [build("sem.wait", "vec", STORED), build("sem.wait", "vec", STORED + 1)]


__all__ = ["AdamW", "adamw_programs", "sram_bytes", "tile_op", "update_ops"]
