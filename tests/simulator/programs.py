"""Programs for the simulator tests, built from the ISA directly (no assembler needed)."""

from __future__ import annotations

from isa import DType, Instruction, MemRef, Program, Space, build

S, H, A = Space.SRAM, Space.HBM, Space.ACC


def loop(count: int, body: list, r0=None, inc0: int = 0, r1=None, inc1: int = 0) -> list:
    """A loop placeholder + body; ``flatten`` turns the placeholder into ``loop`` with its end."""
    return [("loop", count, len(flatten(body)), r0, inc0, r1, inc1), *body]


def flatten(items: list) -> list:
    out: list = []
    for it in items:
        if isinstance(it, list):
            out.extend(flatten(it))
        else:
            out.append(it)
    return out


def program(items: list, data=()) -> Program:
    flat = flatten(items)
    ins: list[Instruction] = []
    for i, it in enumerate(flat):
        if isinstance(it, tuple):
            _, count, body_len, r0, inc0, r1, inc1 = it
            it = build("loop", count, i + 1 + body_len, r0, inc0, r1, inc1)
        ins.append(it)
    return Program(tuple(ins), tuple(data))


def tiled_gemm(M: int, K: int, N: int, T: int, dt: DType, a_base: int, b_base: int,
               c_base: int) -> Program:
    """C = A @ B with T x T tiles, single-buffered, ordered by semaphores.

    Address registers: a0 = A offset (i and k loops), a2 = B offset (j and k loops),
    a1 = C offset (i and j loops: nested loops add into one register and restore it on exit).
    Semaphores: 0 tiles loaded, 1 tile buffers free, 3 accumulator ready, 4 accumulator free,
    2 C tile in SRAM, 5 C buffer free. k = 0 is peeled so its mm overwrites the accumulator.
    """
    e = dt.nbytes(1) if dt.bits >= 8 else 1
    acc = dt.accumulator
    SA, SB, SC = 0, 0x4000, 0x8000

    def loads(k_off_a: int, k_off_b: int) -> list:
        return [build("dma.load", MemRef(S, SA), MemRef(H, a_base + k_off_a, 0), dt, T, T,
                      stride=K),
                build("dma.load", MemRef(S, SB), MemRef(H, b_base + k_off_b, 2), dt, T, T,
                      stride=N),
                build("sem.signal", "dma", 0)]

    def matmul(flags) -> list:
        return [build("sem.wait", "mx", 0),
                build("mm", MemRef(A, 0), MemRef(S, SA), MemRef(S, SB), T, T, T, dt, dt, flags),
                build("sem.signal", "mx", 1)]

    tile = [
        build("sem.wait", "dma", 1), *loads(0, 0),
        build("sem.wait", "mx", 4), *matmul(0),
        loop(K // T - 1, [build("sem.wait", "dma", 1), *loads(T * e, T * N * e), *matmul("accum")],
             "a0", T * e, "a2", T * N * e),
        build("sem.signal", "mx", 3),
        build("sem.wait", "vec", 3), build("sem.wait", "vec", 5),
        build("v.cast", MemRef(S, SC), MemRef(A, 0), T, T, acc, acc),
        build("sem.signal", "vec", 4), build("sem.signal", "vec", 2),
        build("sem.wait", "dma", 2),
        build("dma.store", MemRef(H, c_base, 1), MemRef(S, SC), acc, T, T, stride=N),
        build("sem.signal", "dma", 5),
    ]
    body = [
        build("sem.signal", "mx", 1), build("sem.signal", "vec", 4), build("sem.signal", "dma", 5),
        loop(M // T, [loop(N // T, tile, "a2", T * e, "a1", T * 4)], "a0", T * K * e, "a1",
             T * N * 4),
        build("halt"),
    ]
    return program(body)
