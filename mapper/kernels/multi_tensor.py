"""PyTorch's multi-tensor kernels (``multi_tensor_apply``): the fused and foreach optimizers.

PyTorch does not update a list of tensors with one kernel per tensor. It cuts every tensor
into chunks of ``CHUNK`` elements and launches kernels of at most ``MAX_BLOCKS`` chunks (and
``MAX_TENSORS[depth]`` tensors, ``depth`` the number of tensor lists). Each chunk is one
thread block of ``THREADS`` threads. The block walks its chunk ``STEP`` elements at a time
(``ILP`` per thread): load the elements of every list, compute, store, go on. Its loads wait
for its own previous math, so one chunk costs ``CHUNK / STEP`` = 32 round trips to memory.
The chip overlaps them only across the blocks that are resident on a core at once
(``occupancy``, a property of the kernel's register use): 4 for the simple foreach kernels
(2048 threads per SM over 512-thread blocks); 1 for the fused AdamW, whose four lists of
ILP values and fp64 scalars take far more registers. That 1 is inferred, not measured here:
it is what the measured steps of 10 M and 84 M parameters are consistent with (one block
per SM: two waves for 153 blocks), and no register count of the kernel is in the data.

That is the mechanism behind PyTorch's optimizer times, well below the HBM roofline: the
latency of each round trip (``dma.latency``) is exposed once per step, and the chip's
bandwidth is shared by the blocks in flight. The chunk, block and launch constants are
PyTorch's (``aten/src/ATen/native/cuda/MultiTensorApply.cuh``); latency and bandwidth are the
chip's own, fitted elsewhere.

Each core runs its blocks (block ``i`` on core ``i % cores``, as the block scheduler deals
them) ``occupancy`` at a time, as one single-buffered pipeline: the DMA engine stores step
``k - 1`` and loads step ``k``; the vector engine waits for the loads, computes, and
signals. Launches are separate kernels (a barrier, the chip's ``kernel_gap``).
Semaphores: 0 loaded (dma -> vec), 1 computed (vec -> dma).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from isa import DType, Instruction, MemRef, build
from mapper.emit import Arena, Item, hbm, loop, sram
from mapper.kernels.adamw import AdamW, update_ops
from mapper.kernels.adamw import tile_op as _op

CHUNK = 65536  # kChunkSize: elements per block
THREADS = 512  # kBlockSize
ILP = 4  # kILP: elements per thread per step
STEP = THREADS * ILP
MAX_BLOCKS = 320  # depth_to_max_blocks
MAX_TENSORS = {1: 110, 2: 64, 3: 48, 4: 36, 5: 30}  # depth_to_max_tensors
WIDTH = 256  # a step's elements as rows of WIDTH
F32 = DType.FP32
LOADED, COMPUTED = 0, 1

Math = Callable[[int, int, dict[str, MemRef], MemRef], list[Instruction]]


@dataclass(frozen=True)
class MultiTensorOp:
    """One multi-tensor kernel: the lists it reads (a list passed twice counts twice, as in
    ``_foreach_addcmul_(v, g, g)``), the lists it writes, its arithmetic on one tile
    (``math(rows, cols, buffers, temp)``) and the blocks a core holds at once."""

    name: str
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    math: Math
    occupancy: int = 4

    @property
    def depth(self) -> int:
        return len(self.reads) + len([w for w in self.writes if w not in self.reads])

    @property
    def lists(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.reads + self.writes))


def launches(sizes: list[int], depth: int) -> list[list[tuple[int, int, int]]]:
    """The kernels PyTorch launches over tensors of ``sizes`` elements: each a list of
    chunks (tensor, first element, elements), cut at ``MAX_BLOCKS`` chunks or
    ``MAX_TENSORS[depth]`` tensors."""
    out: list[list[tuple[int, int, int]]] = []
    cur: list[tuple[int, int, int]] = []
    tensors: set[int] = set()
    cap = MAX_TENSORS[min(depth, max(MAX_TENSORS))]
    for t, size in enumerate(sizes):
        for first in range(0, size, CHUNK):
            if len(cur) == MAX_BLOCKS or (t not in tensors and len(tensors) == cap):
                out.append(cur)
                cur, tensors = [], set()
            cur.append((t, first, min(CHUNK, size - first)))
            tensors.add(t)
    return out + ([cur] if cur else [])


def _shape(n: int) -> tuple[int, int]:
    return (n // WIDTH, WIDTH) if n % WIDTH == 0 else (1, n)


def core_programs(op: MultiTensorOp, chunks: list[tuple[int, int, int]], cores: int,
                  bases: dict[str, int], offsets: list[int]) -> list[list[Item]]:
    """One launch: the items of each core that gets a block. ``bases`` is each list's HBM
    address, ``offsets[t]`` tensor ``t``'s first element in every list."""
    slot = 4 * STEP * op.occupancy
    arena = Arena(64)
    buf = {name: arena.take(slot) for name in op.lists}
    temp = arena.take(slot)
    progs = []
    for core in range(min(cores, len(chunks))):
        mine = chunks[core::cores]
        its: list[tuple[tuple[int, int], ...]] = []  # per step: (element offset, n) per block
        for g in range(0, len(mine), op.occupancy):
            group = mine[g:g + op.occupancy]
            for s in range(0, max(n for _, _, n in group), STEP):
                its.append(tuple((offsets[t] + first + s, min(STEP, n - s))
                                 for t, first, n in group if n > s))
        progs.append(_pipeline(op, its, bases, buf, temp))
    return progs


def _runs(its: list) -> list[tuple[int, int]]:
    """Maximal runs (start, length) of steps that repeat the previous one STEP further on."""
    runs: list[tuple[int, int]] = []
    for k, it in enumerate(its):
        prev = its[k - 1] if k else None
        if prev is not None and len(prev) == len(it) and all(
                a == b + STEP and n == m for (a, n), (b, m) in zip(it, prev)):
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((k, 1))
    return runs


def _pipeline(op: MultiTensorOp, its: list, bases: dict[str, int], buf: dict[str, int],
              temp: int) -> list[Item]:
    """The DMA and vector sequences of one core: steps in runs, each run after its first step
    a loop whose register moves every HBM address one step on."""
    def transfers(k: int, store: bool, reg: int | None) -> list[Item]:
        out: list[Item] = []
        for i, (e, n) in enumerate(its[k]):
            rows, cols = _shape(n)
            for name in (op.writes if store else dict.fromkeys(op.reads)):
                h, s = hbm(bases[name] + 4 * e, reg), sram(buf[name] + 4 * STEP * i)
                out.append(build("dma.store", h, s, F32, rows, cols) if store else
                           build("dma.load", s, h, F32, rows, cols))
        return out

    def dma(k: int, reg: int | None) -> list[Item]:
        out: list[Item] = []
        if k:
            out += [build("sem.wait", "dma", COMPUTED)] + transfers(k - 1, True, reg)
        return out + transfers(k, False, reg) + [build("sem.signal", "dma", LOADED)]

    def vec(k: int) -> list[Item]:
        it = its[k]
        full = all(n == STEP for _, n in it)
        tiles = [(i, *_shape(n)) for i, (_, n) in enumerate(it)] if not full else \
            [(0, len(it) * STEP // WIDTH, WIDTH)]
        out: list[Item] = [build("sem.wait", "vec", LOADED)]
        for i, rows, cols in tiles:
            off = 4 * STEP * i
            out += op.math(rows, cols, {n: sram(a + off) for n, a in buf.items()},
                           sram(temp + off))
        return out + [build("sem.signal", "vec", COMPUTED)]

    d: list[Item] = []
    v: list[Item] = []
    for start, length in _runs(its):
        d += dma(start, None)
        v += vec(start)
        if length > 1:
            d += loop(length - 1, dma(start + 1, 0), (("a0", 4 * STEP),))
            v += loop(length - 1, vec(start + 1))
    d += [build("sem.wait", "dma", COMPUTED)] + transfers(len(its) - 1, True, None)
    return d + v


def fused_adamw(a: AdamW) -> MultiTensorOp:
    """``torch.optim.AdamW(fused=True)``: one kernel over (params, grads, m, v)."""
    def math(rows: int, cols: int, b: dict[str, MemRef], t: MemRef) -> list[Instruction]:
        return update_ops(a, rows, cols, b["p"], b["g"], b["m"], b["v"], t, lambda x: build(
            "v.adds", x, x, rows, cols, F32, F32, a.eps ** 2))
    return MultiTensorOp("fused_adamw", ("p", "g", "m", "v"), ("p", "m", "v"), math, 1)


def foreach_adamw(a: AdamW) -> list[MultiTensorOp]:
    """``torch.optim.AdamW(foreach=True)`` (``_multi_tensor_adam``, not capturable): eight
    foreach kernels; ``d`` is the list ``_foreach_sqrt`` allocates."""
    b1, b2 = a.betas
    c1, c2 = 1 - b1 ** a.step, 1 - b2 ** a.step

    def scale(x: str, s: float) -> Math:
        return lambda r, c, b, t: [_op("v.scale", r, c, b[x], b[x], s=s)]

    def lerp(r: int, c: int, b: dict[str, MemRef], t: MemRef) -> list[Instruction]:
        return [_op("v.sub", r, c, t, b["g"], b["m"]), _op("v.scale", r, c, t, t, s=1 - b1),
                _op("v.add", r, c, b["m"], b["m"], t)]

    def addcmul(r: int, c: int, b: dict[str, MemRef], t: MemRef) -> list[Instruction]:
        return [_op("v.mul", r, c, t, b["g"], b["g"]), _op("v.scale", r, c, t, t, s=1 - b2),
                _op("v.add", r, c, b["v"], b["v"], t)]

    def sqrt(r: int, c: int, b: dict[str, MemRef], t: MemRef) -> list[Instruction]:
        return [_op("v.rsqrt", r, c, t, b["v"]), _op("v.recip", r, c, b["d"], t)]

    def adds(r: int, c: int, b: dict[str, MemRef], t: MemRef) -> list[Instruction]:
        return [build("v.adds", b["d"], b["d"], r, c, F32, F32, a.eps)]

    def addcdiv(r: int, c: int, b: dict[str, MemRef], t: MemRef) -> list[Instruction]:
        return [_op("v.recip", r, c, t, b["d"]), _op("v.mul", r, c, t, t, b["m"]),
                _op("v.scale", r, c, t, t, s=a.lr / c1), _op("v.sub", r, c, b["p"], b["p"], t)]

    return [MultiTensorOp("mul_", ("p",), ("p",), scale("p", 1 - a.lr * a.weight_decay)),
            MultiTensorOp("lerp_", ("m", "g"), ("m",), lerp),
            MultiTensorOp("mul_", ("v",), ("v",), scale("v", b2)),
            MultiTensorOp("addcmul_", ("v", "g", "g"), ("v",), addcmul),
            MultiTensorOp("sqrt", ("v",), ("d",), sqrt),
            MultiTensorOp("div_", ("d",), ("d",), scale("d", 1 / c2 ** 0.5)),
            MultiTensorOp("add_", ("d",), ("d",), adds),
            MultiTensorOp("addcdiv_", ("p", "m", "d"), ("p",), addcdiv)]


__all__ = ["CHUNK", "MAX_BLOCKS", "STEP", "MultiTensorOp", "core_programs", "foreach_adamw",
           "fused_adamw", "launches"]
