"""Row reductions streamed chunk by chunk: each pass re-reads the row from HBM.

A GPU library's norm and softmax kernels (PyTorch's) do not stage a row in shared memory:
a thread block walks its row in register-sized chunks, once per pass (LayerNorm and
RMSNorm: statistics, then the output; softmax: max, sum of exponentials, output), and the
block must have each chunk before it folds it in. So a few wide rows are latency-bound —
a 16k-wide LayerNorm row is 2 x 16 chunk loads in a chain, whatever the lanes — while many
rows keep the memory busy; and any row width maps, however small the SRAM.

Here a core takes a group of rows at a time (groups dealt round-robin), the DMA streams
[rows, chunk] pieces (``chunk`` = ``VectorConfig.row_elems``, the registers' share of a
row) into two buffers, the vector engine folds each into per-row fp32 statistics, and the
last pass writes the output chunk by chunk. With two buffers a chunk's load overlaps the
previous chunk's math, so one step costs about half a DMA round trip: the chain a few wide
rows pay comes out of the DMA latency, with no parameter of its own.

Semaphores as in ``mapper.kernels.rowwise``: 0/1 inputs full, 2/3 inputs free, 4/5 output
ready, 6/7 output free.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from isa import DType, build
from mapper.emit import Arena, Item, hbm, sram, steps
from mapper.kernels.rowwise import IN_FREE, IN_FULL, OUT_FREE, OUT_READY, View, _prologue

F32 = DType.FP32
PASSES = {"rmsnorm": 2, "layernorm": 2, "softmax": 3, "rmsgrad": 2, "lngrad": 2,
          "rmsxdy": 2, "lnxdy": 2}
# what each pass loads besides x: dy, gamma, beta (the backward kinds: dL/dx of a norm,
# and dy times the normalised x for its parameters' gradient)
LOADS = {"rmsnorm": ((), ("gamma",)), "layernorm": ((), ("gamma", "beta")),
         "softmax": ((), (), ()), "rmsgrad": (("dy", "gamma"), ("dy", "gamma")),
         "lngrad": (("dy", "gamma"), ("dy", "gamma")), "rmsxdy": ((), ("dy",)),
         "lnxdy": ((), ("dy",))}
LAYERNORMS = ("layernorm", "lngrad", "lnxdy")  # kinds that need the mean as well
MAX_GROUP_ROWS = 16  # rows a core streams side by side (one instruction's rows)
DEFAULT_CHUNK = 1024  # columns per chunk when the chip names no register width


@dataclass(frozen=True)
class RowStream:
    """``kind`` over ``rows`` rows of ``x`` into ``out``; norms read fp32 gamma (then beta)
    at ``params``."""

    kind: str  # rmsnorm | layernorm | softmax
    rows: int
    x: View
    out: View
    params: int = 0
    eps: float = 1e-5
    dy: View | None = None  # the backward kinds' incoming gradient
    chunk: int = DEFAULT_CHUNK
    group: int = MAX_GROUP_ROWS

    @property
    def cols(self) -> int:
        return self.x.cols


def chunk_of(cols: int, row_elems: int) -> int:
    """Columns per chunk: the registers' share of a row (``row_elems``), at most the row."""
    return max(1, min(cols, row_elems or DEFAULT_CHUNK))


def _layout(k: RowStream) -> tuple[dict[str, list[int] | int], int]:
    arena = Arena(64)
    take = arena.take
    r, w = k.group, k.chunk
    loads = {name for names in LOADS[k.kind] for name in names}
    at: dict[str, list[int] | int] = {
        "x": [take(k.x.dtype.nbytes(r * w)) for _ in range(2)],
        "out": [take(k.out.dtype.nbytes(r * w)) for _ in range(2)],
        "dy": [take(k.dy.dtype.nbytes(r * w)) for _ in range(2)] if "dy" in loads else [],
        "gamma": [take(4 * w) for _ in range(2)] if "gamma" in loads else [],
        "beta": [take(4 * w) for _ in range(2)] if "beta" in loads else [],
        "tmp": take(4 * r * w), "tmp2": take(4 * r * w) if k.kind.endswith("grad") else 0,
        **{s: take(4 * r) for s in ("s1", "s2", "s3", "s4", "part")}}
    if k.kind == "layernorm":  # a chunk's two sums (v.welford), as far apart as s1 and s2
        at["pq"] = take(at["s2"] - at["s1"] + 4 * r)
    return at, arena.size


def sram_bytes(k: RowStream) -> int:
    return _layout(k)[1]


def fit(k: RowStream, capacity: int, cores: int) -> RowStream:
    """Rows per group: enough to give every core one group, at most ``MAX_GROUP_ROWS``,
    halved (then the chunk halved) until the buffers fit ``capacity``."""
    k = replace(k, group=max(1, min(MAX_GROUP_ROWS, -(-k.rows // cores))))
    while sram_bytes(k) > capacity and k.group > 1:
        k = replace(k, group=k.group // 2)
    while sram_bytes(k) > capacity and k.chunk > 64:
        k = replace(k, chunk=max(64, k.chunk // 2))
    if sram_bytes(k) > capacity:
        raise ValueError(f"a streamed {k.kind} needs {sram_bytes(k)} B of SRAM for one row's "
                         f"chunk, more than the core's {capacity} B")
    return k


def stream_programs(k: RowStream, cores: int) -> list[list[Item]]:
    """Per-core programs: each core's groups of rows, pass by pass, chunk by chunk."""
    groups = list(range(0, k.rows, k.group))
    at, _ = _layout(k)
    progs = []
    for core in range(min(cores, len(groups))):
        dma: list[Item] = []
        vec: list[Item] = []
        n = 0  # this core's step counter: buffers alternate with it
        for r0 in groups[core::cores]:
            rows = min(k.group, k.rows - r0)
            for p in range(PASSES[k.kind]):
                d, v, n = _pass(k, at, r0, rows, p, n)
                dma += d
                vec += v
        dma += [build("sem.wait", "dma", IN_FREE + b) for b in range(2)]
        vec += [build("sem.wait", "vec", OUT_FREE + b) for b in range(2)]
        progs.append(_prologue(2) + dma + vec)
    return progs


def _pass(k: RowStream, at: dict, r0: int, rows: int, p: int, first: int
          ) -> tuple[list[Item], list[Item], int]:
    """One pass over a group's row chunks: DMA and vector items, and the next step number.
    Whole-width chunks between the first and the last run in a loop whose registers step
    the HBM addresses."""
    w, cols = k.chunk, k.cols
    chunks = math.ceil(cols / w)
    last_pass = p == PASSES[k.kind] - 1
    ex, eo = k.x.dtype.nbytes(w), k.out.dtype.nbytes(w)
    loads = LOADS[k.kind][p]
    ed = k.dy.dtype.nbytes(w) if k.dy is not None else 0
    incs = {ex: 0}
    if "dy" in loads:
        incs.setdefault(ed, len(incs))
    if "gamma" in loads:
        incs.setdefault(4 * w, len(incs))
    if last_pass:
        incs.setdefault(eo, len(incs))
    loopable = len(incs) <= 2

    def c0(n: int) -> int:
        return (n - first) * w

    def dma_step(n: int, in_loop: bool) -> list[Item]:
        b, c = n % 2, c0(n)
        width = min(w, cols - c)

        def reg(step_bytes: int) -> int | None:
            return incs[step_bytes] if in_loop else None

        seq = [build("sem.wait", "dma", IN_FREE + b),
               build("dma.load", sram(at["x"][b]), hbm(k.x.row(r0) + k.x.dtype.nbytes(c),
                                                       reg(ex)),
                     k.x.dtype, rows, width, stride=k.x.ld or cols)]
        if "dy" in loads:
            d = k.dy
            seq.append(build("dma.load", sram(at["dy"][b]), hbm(d.row(r0) + d.dtype.nbytes(c),
                                                                reg(ed)),
                             d.dtype, rows, width, stride=d.ld or cols))
        if "gamma" in loads:
            seq.append(build("dma.load", sram(at["gamma"][b]), hbm(k.params + 4 * c,
                                                                   reg(4 * w)), F32, 1, width))
        if "beta" in loads:
            seq.append(build("dma.load", sram(at["beta"][b]),
                             hbm(k.params + 4 * (cols + c), reg(4 * w)), F32, 1, width))
        seq.append(build("sem.signal", "dma", IN_FULL + b))
        if last_pass and n > first:
            seq += _store(k, at, r0, rows, n - 1, c0(n - 1), min(w, cols - c0(n - 1)),
                          reg(eo))
        return seq

    def vec_step(n: int, in_loop: bool) -> list[Item]:  # noqa: ARG001 - SRAM only
        b, c = n % 2, c0(n)
        width = min(w, cols - c)
        seq = [build("sem.wait", "vec", IN_FULL + b)]
        if last_pass:
            seq.append(build("sem.wait", "vec", OUT_FREE + b))
        seq += _math(k, at, b, rows, width, p, c == 0)
        seq.append(build("sem.signal", "vec", IN_FREE + b))
        if last_pass:
            seq.append(build("sem.signal", "vec", OUT_READY + b))
        return seq

    dma: list[Item] = []
    vec: list[Item] = []
    # chunk 0 (it starts the statistics), then whole chunks, then the last one
    middle = chunks - 2 if chunks >= 2 else 0
    dma += dma_step(first, False)
    vec += vec_step(first, False)
    if middle:
        regs = tuple((f"a{r}", 2 * inc) for inc, r in incs.items())
        if loopable:
            dma += steps(middle, dma_step, regs, first + 1, 2)
            vec += steps(middle, vec_step, (), first + 1, 2)
        else:
            for n in range(first + 1, first + 1 + middle):
                dma += dma_step(n, False)
                vec += vec_step(n, False)
    if chunks >= 2:
        dma += dma_step(first + chunks - 1, False)
        vec += vec_step(first + chunks - 1, False)
    end = first + chunks
    if last_pass:
        dma += _store(k, at, r0, rows, end - 1, c0(end - 1), min(w, cols - c0(end - 1)))
    else:
        vec += _finish(k, at, rows, p)
    return dma, vec, end


def _store(k: RowStream, at: dict, r0: int, rows: int, n: int, c: int, width: int,
           reg: int | None = None) -> list[Item]:
    b = n % 2
    o = k.out
    return [build("sem.wait", "dma", OUT_READY + b),
            build("dma.store", hbm(o.row(r0) + o.dtype.nbytes(c), reg), sram(at["out"][b]),
                  o.dtype, rows, width, stride=o.ld or o.cols),
            build("sem.signal", "dma", OUT_FREE + b)]


def _math(k: RowStream, at: dict, b: int, rows: int, w: int, p: int, first: bool
          ) -> list[Item]:
    """The vector work on one chunk of ``rows`` rows in pass ``p``."""
    x, tmp, t2, o = sram(at["x"][b]), sram(at["tmp"]), sram(at["tmp2"]), sram(at["out"][b])
    s1, s2, s3, s4, part = (sram(at[n]) for n in ("s1", "s2", "s3", "s4", "part"))
    dy = sram(at["dy"][b]) if at["dy"] else None
    gamma = sram(at["gamma"][b]) if at["gamma"] else None
    idt, odt = k.x.dtype, k.out.dtype
    ddt = k.dy.dtype if k.dy is not None else idt

    def v(mn: str, dst, a, bb, dt: DType = F32, adt: DType = F32, bdt: DType = F32,  # noqa: ANN001
          bcast: str = "none") -> Item:
        return build(mn, dst, a, bb, rows, w, dt, adt, bdt, bcast)

    def fold(total, op: str, src, sdt: DType = F32) -> list[Item]:  # noqa: ANN001
        """total = reduce(src) on the first chunk, else total (+ or max) reduce(src)."""
        red = "v.rmax" if op == "v.max" else "v.rsum"
        if first:
            return [build(red, total, src, rows, w, F32, sdt)]
        return [build(red, part, src, rows, w, F32, sdt),
                build(op, total, total, part, rows, 1, F32, F32, F32)]

    def stats(sums: bool) -> list[Item]:  # sum of x (a layernorm's), and of x^2
        seq = fold(s1, "v.add", x, idt) if sums else []
        return seq + [v("v.mul", tmp, x, x, F32, idt, idt)] + fold(s2, "v.add", tmp)

    kind = k.kind
    if kind == "layernorm" and p == 0:  # both sums in one Welford-priced pass
        ld = (at["s2"] - at["s1"]) // 4
        if first:
            return [build("v.welford", s1, x, rows, w, F32, idt, ld)]
        pq, pq2 = sram(at["pq"]), sram(at["pq"] + 4 * ld)
        return [build("v.welford", pq, x, rows, w, F32, idt, ld),
                build("v.add", s1, s1, pq, rows, 1, F32, F32, F32),
                build("v.add", s2, s2, pq2, rows, 1, F32, F32, F32)]
    if kind == "softmax":
        if p == 0:
            return fold(s1, "v.max", x, idt)
        seq = [v("v.sub", tmp, x, s1, F32, idt, F32, "col"),
               build("v.exp", tmp, tmp, rows, w, F32, F32)]
        if p == 1:
            return seq + fold(s2, "v.add", tmp)
        return seq + [v("v.mul", o, tmp, s2, odt, F32, F32, "col")]
    if p == 0:
        seq = stats(kind in LAYERNORMS)
        if kind.endswith("grad"):  # sums of gamma*dy (a layernorm's) and of gamma*dy*x
            seq.append(v("v.mul", t2, dy, gamma, F32, ddt, F32, "row"))
            if kind == "lngrad":
                seq += fold(s3, "v.add", t2)
            seq += [v("v.mul", t2, t2, x, F32, F32, idt)] + fold(s4, "v.add", t2)
        return seq
    if kind == "rmsnorm":
        return [v("v.mul", tmp, x, s2, F32, idt, F32, "col"),
                v("v.mul", o, tmp, gamma, odt, F32, F32, "row")]
    if kind == "layernorm":
        return [v("v.sub", tmp, x, s1, F32, idt, F32, "col"),
                v("v.mul", tmp, tmp, s2, F32, F32, F32, "col"),
                v("v.mul", tmp, tmp, gamma, F32, F32, F32, "row"),
                v("v.add", o, tmp, sram(at["beta"][b]), odt, F32, F32, "row")]
    if kind in ("rmsxdy", "lnxdy"):  # dy * normalised x
        if kind == "lnxdy":
            seq = [v("v.sub", tmp, x, s1, F32, idt, F32, "col"),
                   v("v.mul", tmp, tmp, s2, F32, F32, F32, "col")]
        else:
            seq = [v("v.mul", tmp, x, s2, F32, idt, F32, "col")]
        return seq + [v("v.mul", o, tmp, dy, odt, F32, ddt)]
    seq = [v("v.mul", tmp, dy, gamma, F32, ddt, F32, "row")]
    if kind == "rmsgrad":  # dx = r * gamma * dy - c * x
        return seq + [v("v.mul", tmp, tmp, s2, F32, F32, F32, "col"),
                      v("v.mul", t2, x, s4, F32, idt, F32, "col"),
                      v("v.sub", o, tmp, t2, odt)]
    # lngrad: dx = r * (gamma * dy - a - xhat * b), xhat = (x - mean) * r
    return seq + [v("v.sub", tmp, tmp, s3, F32, F32, F32, "col"),
                  v("v.sub", t2, x, s1, F32, idt, F32, "col"),
                  v("v.mul", t2, t2, s2, F32, F32, F32, "col"),
                  v("v.mul", t2, t2, s4, F32, F32, F32, "col"),
                  v("v.sub", tmp, tmp, t2),
                  v("v.mul", o, tmp, s2, odt, F32, F32, "col")]


def _finish(k: RowStream, at: dict, rows: int, p: int) -> list[Item]:
    """Per-row statistics at the end of a pass: 1/rms, the mean and 1/std, 1/sum, and the
    backward's two coefficients."""
    s1, s2, s3, s4, part = (sram(at[n]) for n in ("s1", "s2", "s3", "s4", "part"))
    inv = 1.0 / k.cols

    def col(mn: str, dst, a, b=None, s: float | None = None) -> Item:  # noqa: ANN001
        if s is not None:
            return build(mn, dst, a, rows, 1, F32, F32, s)
        if b is None:
            return build(mn, dst, a, rows, 1, F32, F32)
        return build(mn, dst, a, b, rows, 1, F32, F32, F32)

    if k.kind == "softmax":
        return [col("v.recip", s2, s2)] if p == 1 else []
    seq = []
    if k.kind in LAYERNORMS:  # var = E[x^2] - mean^2
        seq += [col("v.scale", s1, s1, s=inv), col("v.mul", part, s1, s1),
                col("v.scale", s2, s2, s=inv), col("v.sub", s2, s2, part)]
    else:
        seq.append(col("v.scale", s2, s2, s=inv))
    seq += [col("v.adds", s2, s2, s=k.eps), col("v.rsqrt", s2, s2)]  # s2 = r
    if k.kind == "rmsgrad":  # c = r^3 / n * sum(gamma dy x)
        seq += [col("v.mul", part, s2, s2), col("v.mul", part, part, s2),
                col("v.mul", s4, s4, part), col("v.scale", s4, s4, s=inv)]
    elif k.kind == "lngrad":  # a = mean(gamma dy); b = r * (mean(gamma dy x) - mean * a)
        seq += [col("v.scale", s3, s3, s=inv), col("v.scale", s4, s4, s=inv),
                col("v.mul", part, s1, s3), col("v.sub", s4, s4, part),
                col("v.mul", s4, s4, s2)]
    return seq
