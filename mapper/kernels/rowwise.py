"""Row-wise kernels (norms, RoPE, SiLU*up, residual adds) over the cores of a chip.

Rows are cut into tiles of ``rows_per_tile`` and dealt round-robin to the cores. Per tile the
DMA loads every input view, the vector engine applies the op, the DMA stores the result;
two buffer sets let the loads of tile t+1 overlap the math of tile t. Per-column parameters
(norm weights, rotary tables) are loaded by each core before its first tile.

Semaphores: 0/1 inputs full (dma->vec), 2/3 inputs free (vec->dma),
4/5 output ready (vec->dma), 6/7 output free (dma->vec).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from isa import DType, MemRef, build
from mapper.emit import Arena, Item, hbm, sram, steps

IN_FULL, IN_FREE, OUT_READY, OUT_FREE = 0, 2, 4, 6
ALIGN = 64


@dataclass(frozen=True)
class View:
    """A [rows, cols] region of an HBM tensor: ``addr`` of row 0, leading dimension ``ld``."""

    addr: int
    cols: int
    dtype: DType
    ld: int = 0  # elements between rows (0: cols)

    def row(self, r: int) -> int:
        return self.addr + self.dtype.nbytes(r * (self.ld or self.cols))


@dataclass(frozen=True)
class Param:
    """A per-row-tile or per-kernel fp32 operand (norm weights; a rotary table per row)."""

    addr: int
    floats: int  # per kernel (per_row False) or per row (per_row True)
    per_row: bool = False


# op(out, inputs, params, rows, cols) -> vector instructions for one tile
OpFn = Callable[[MemRef, list[MemRef], list[MemRef], int], list]


@dataclass(frozen=True)
class RowKernel:
    rows: int
    inputs: tuple[View, ...]
    out: View
    op: OpFn
    params: tuple[Param, ...] = ()
    rows_per_tile: int = 16
    name: str = "rowwise"
    # Element-wise kernels: the op for a block of this many columns. A row too wide for the
    # SRAM is then streamed in column blocks (each a kernel of its own over a strided view);
    # None for ops that need the whole row at once (norms, reductions).
    op_for: Callable[[int], OpFn] | None = None
    col_align: int = 64  # a column block's width is a multiple of this (RoPE: the head dim)
    # buffer sets: 2 overlaps the loads of tile t+1 with the math of tile t; 1 when not even
    # one row of a whole-row op fits twice (a wide norm's backward on a small SRAM)
    buffers: int = 2
    # rows a tile holds at least, where a core has them: a warp-per-row op is latency-bound
    # below this many rows in flight (a GPU keeps them resident at once, not in turns)
    latency_rows: int = 0


def column_block(k: RowKernel, col0: int, cols: int) -> RowKernel:
    """Columns ``col0 .. col0+cols-1`` of an element-wise kernel, as a kernel of its own:
    every view keeps its row pitch, so each row of the block is one strided run."""
    def part(v: View) -> View:
        return View(v.addr + v.dtype.nbytes(col0), cols, v.dtype, v.ld or v.cols)

    assert k.op_for is not None
    return RowKernel(k.rows, tuple(part(v) for v in k.inputs), part(k.out), k.op_for(cols),
                     k.params, k.rows_per_tile, f"{k.name}[{col0}:{col0 + cols}]")


def concat_programs(parts: list[list[list[Item]]]) -> list[list[Item]]:
    """Kernels run one after another on each core (each leaves its semaphores at zero)."""
    out: list[list[Item]] = [[] for _ in range(max(len(p) for p in parts))]
    for progs in parts:
        for core, prog in enumerate(progs):
            out[core] += prog
    return out


def _layout(k: RowKernel) -> tuple[list[list[int]], list[int], list[list[int]], int]:
    arena = Arena(ALIGN)
    take = arena.take

    t = k.rows_per_tile
    ins = [[take(v.dtype.nbytes(t * v.cols)) for v in k.inputs] for _ in range(k.buffers)]
    outs = [take(k.out.dtype.nbytes(t * k.out.cols)) for _ in range(k.buffers)]
    shared = [take(4 * p.floats) if not p.per_row else -1 for p in k.params]
    params = [[take(4 * p.floats * t) if p.per_row else at for p, at in zip(k.params, shared)]
              for _ in range(k.buffers)]  # per-row operands buffered like the inputs
    return ins, outs, params, arena.size


def sram_bytes(k: RowKernel) -> int:
    return _layout(k)[3]


def row_programs(k: RowKernel, cores: int) -> list[list[Item]]:
    tiles = list(range(0, k.rows, k.rows_per_tile))
    ins, outs, params, _ = _layout(k)
    progs = []
    for core in range(min(cores, len(tiles))):
        mine = tiles[core::cores]
        progs.append(_prologue(k.buffers) + _dma(k, mine, ins, outs, params, cores)
                     + _vec(k, mine, ins, outs, params))
    return progs


def _prologue(buffers: int = 2) -> list[Item]:
    return [build("sem.signal", "vec", IN_FREE + b) for b in range(buffers)] + \
        [build("sem.signal", "dma", OUT_FREE + b) for b in range(buffers)]


def _pitches(k: RowKernel, cores: int) -> dict[int, int] | None:
    """Address register per distinct HBM step between a core's tiles (one step is
    ``cores`` tiles of rows); None when more than the two a loop can advance."""
    rows = cores * k.rows_per_tile
    steps = [v.dtype.nbytes(rows * (v.ld or v.cols)) for v in (*k.inputs, k.out)]
    steps += [4 * p.floats * rows for p in k.params if p.per_row]
    regs: dict[int, int] = {}
    for step in steps:
        regs.setdefault(step, len(regs))
    return regs if len(regs) <= 2 else None


def _dma(k: RowKernel, tiles: list[int], ins, outs, params, cores: int) -> list[Item]:
    """Loads of tile n, then the store of tile n-1; whole tiles after the first run in a
    loop whose registers step the HBM addresses (so the program stays small)."""
    seq: list[Item] = []
    for p, at in zip(k.params, params[0]):
        if not p.per_row:
            seq.append(build("dma.load", sram(at), hbm(p.addr), DType.FP32, 1, p.floats))
    regs = _pitches(k, cores)
    rows = cores * k.rows_per_tile

    def step(n: int, in_loop: bool) -> list[Item]:
        r0 = tiles[n]
        count = min(k.rows_per_tile, k.rows - r0)
        b = n % k.buffers

        def reg(nbytes: int) -> int | None:
            return regs[nbytes] if in_loop and regs is not None else None

        out = [build("sem.wait", "dma", IN_FREE + b)]
        for v, at in zip(k.inputs, ins[b]):
            out.append(build("dma.load", sram(at), hbm(v.row(r0), reg(v.dtype.nbytes(
                rows * (v.ld or v.cols)))), v.dtype, count, v.cols, stride=v.ld or v.cols))
        for p, at in zip(k.params, params[b]):
            if p.per_row:
                out.append(build("dma.load", sram(at), hbm(p.addr + 4 * p.floats * r0,
                                                           reg(4 * p.floats * rows)),
                                 DType.FP32, count, p.floats))
        out.append(build("sem.signal", "dma", IN_FULL + b))
        if n:
            o = k.out
            out += _store(k, outs, (n - 1) % k.buffers, tiles[n - 1], min(k.rows_per_tile,
                                                                  k.rows - tiles[n - 1]),
                          reg(o.dtype.nbytes(rows * (o.ld or o.cols))))
        return out

    seq += step(0, False)
    ragged = 1 if k.rows - tiles[-1] < k.rows_per_tile and len(tiles) > 1 else 0
    loop_regs = tuple((f"a{r}", k.buffers * step_bytes) for step_bytes, r in
                      (regs or {}).items())
    body = len(tiles) - 1 - ragged
    seq += steps(body, step, loop_regs, 1, k.buffers) if regs is not None else \
        [i for n in range(1, 1 + body) for i in step(n, False)]
    if ragged:
        seq += step(len(tiles) - 1, False)
    last = len(tiles) - 1
    seq += _store(k, outs, last % k.buffers, tiles[last], min(k.rows_per_tile,
                                                               k.rows - tiles[last]))
    return seq + [build("sem.wait", "dma", IN_FREE + b) for b in range(k.buffers)]


def _store(k: RowKernel, outs: list[int], b: int, r0: int, rows: int,
           reg: int | None = None) -> list[Item]:
    o = k.out
    return [build("sem.wait", "dma", OUT_READY + b),
            build("dma.store", hbm(o.row(r0), reg), sram(outs[b]), o.dtype, rows, o.cols,
                  stride=o.ld or o.cols),
            build("sem.signal", "dma", OUT_FREE + b)]


def _vec(k: RowKernel, tiles: list[int], ins, outs, params) -> list[Item]:
    """The op on every tile; whole tiles in a loop (SRAM addresses only alternate)."""
    def step(n: int, in_loop: bool) -> list[Item]:
        rows = min(k.rows_per_tile, k.rows - tiles[n])
        b = n % k.buffers
        seq: list[Item] = [build("sem.wait", "vec", IN_FULL + b),
                           build("sem.wait", "vec", OUT_FREE + b)]
        seq += k.op(sram(outs[b]), [sram(a) for a in ins[b]], [sram(a) for a in params[b]],
                    rows)
        return seq + [build("sem.signal", "vec", IN_FREE + b),
                      build("sem.signal", "vec", OUT_READY + b)]

    ragged = 1 if k.rows - tiles[-1] < k.rows_per_tile else 0
    seq = steps(len(tiles) - ragged, step, (), 0, k.buffers)
    if ragged:
        seq += step(len(tiles) - 1, False)
    return seq + [build("sem.wait", "vec", OUT_FREE + b) for b in range(k.buffers)]


# ---- the ops the mapper uses -------------------------------------------------------------

def norm_op(kind: str, cols: int, idt: DType, odt: DType, eps: float) -> OpFn:
    mn = "v.rmsnorm" if kind == "rmsnorm" else "v.layernorm"

    def op(out, ins, params, rows):  # noqa: ANN001
        return [build(mn, out, ins[0], params[0], rows, cols, odt, idt, eps)]
    return op


def rms_scale_op(cols: int, dt: DType) -> OpFn:
    """1 / sqrt(mean(x^2) + eps) per row (eps in the param), into an fp32 column. The squares
    overwrite the input tile (the vector engine owns it until it frees the buffer)."""
    f32 = DType.FP32

    def op(out, ins, params, rows):  # noqa: ANN001
        return [build("v.mul", ins[0], ins[0], ins[0], rows, cols, dt, dt, dt),
                build("v.rsum", out, ins[0], rows, cols, f32, dt),
                build("v.scale", out, out, rows, 1, f32, f32, 1.0 / cols),
                build("v.add", out, out, params[0], rows, 1, f32, f32, f32, "scalar"),
                build("v.rsqrt", out, out, rows, 1, f32, f32)]
    return op


def absmax_scale_op(cols: int, dt: DType, qmax: float) -> OpFn:
    """Per-row quantization scale max|x| / qmax into an fp32 column, as sqrt(max(x^2)) (the
    squares overwrite the input tile); params[0] holds a floor that keeps zero rows finite."""
    f32 = DType.FP32

    def op(out, ins, params, rows):  # noqa: ANN001
        return [build("v.mul", ins[0], ins[0], ins[0], rows, cols, dt, dt, dt),
                build("v.rmax", out, ins[0], rows, cols, f32, dt),
                build("v.max", out, out, params[0], rows, 1, f32, f32, f32, "scalar"),
                build("v.rsqrt", out, out, rows, 1, f32, f32),
                build("v.recip", out, out, rows, 1, f32, f32),
                build("v.scale", out, out, rows, 1, f32, f32, 1.0 / qmax)]
    return op


def quant_rows_op(cols: int, idt: DType, odt: DType) -> OpFn:
    """x / scale per row (params[0]: the row scales), rounded and saturated to ``odt``."""
    def op(out, ins, params, rows):  # noqa: ANN001
        return [build("v.quant", out, ins[0], params[0], rows, cols, odt, idt, 0)]
    return op


def rope_op(cols: int, hd: int, dt: DType) -> OpFn:
    def op(out, ins, params, rows):  # noqa: ANN001
        return [build("v.rope", out, ins[0], params[0], rows, cols, dt, dt, hd)]
    return op


def silu_mul_op(cols: int, dt: DType) -> OpFn:  # element-wise
    """SwiGLU's h = silu(gate) * up, the gate computed in place in the input buffer."""
    def op(out, ins, params, rows):  # noqa: ANN001
        return [build("v.silu", ins[0], ins[0], rows, cols, dt, dt),
                build("v.mul", out, ins[0], ins[1], rows, cols, dt, dt, dt)]
    return op


def add_op(cols: int, dt: DType, mnemonic: str = "v.add") -> OpFn:
    """An element-wise binary op (``v.add``, or ``v.mul``) of two inputs."""
    def op(out, ins, params, rows):  # noqa: ANN001
        return [build(mnemonic, out, ins[0], ins[1], rows, cols, dt, dt, dt)]
    return op


def sum_op(cols: int, dt: DType, n: int) -> OpFn:
    """The sum of ``n`` input rows (accumulated into the output buffer)."""
    def op(out, ins, params, rows):  # noqa: ANN001
        seq = [build("v.add", out, ins[0], ins[1], rows, cols, dt, dt, dt)]
        return seq + [build("v.add", out, out, x, rows, cols, dt, dt, dt) for x in ins[2:n]]
    return op


# PyTorch's persistent softmax (aten/src/ATen/native/cuda/SoftMax.cu, ``host_softmax``) runs
# each row on one warp, its elements in registers, when the row has at most this many
# elements of at most this many bytes; wider rows get a block per row.
WARP_SOFTMAX_COLS, WARP_SOFTMAX_BYTES = 2048, 8192


def warp_softmax(cols: int, dt: DType, group_lanes: int) -> bool:
    """Whether a softmax over rows of ``cols`` runs a row per lane group (a chip with
    groups, a row that fits the persistent kernel)."""
    return bool(group_lanes) and cols <= WARP_SOFTMAX_COLS and \
        dt.nbytes(cols) <= WARP_SOFTMAX_BYTES


def act_op(fn: str, cols: int, dt: DType, warp: bool = False) -> OpFn:
    def op(out, ins, params, rows):  # noqa: ANN001
        if warp:
            return [build(f"v.{fn}", out, ins[0], rows, cols, dt, dt, "warp")]
        return [build(f"v.{fn}", out, ins[0], rows, cols, dt, dt)]
    return op


def copy_op(cols: int, dt: DType) -> OpFn:
    def op(out, ins, params, rows):  # noqa: ANN001
        return [build("v.cast", out, ins[0], rows, cols, dt, dt)]
    return op
