"""Assembler and encoder speed: lines/s on a generated 100,000-line program, and
instructions/s encoded and decoded. Prints figures; asserts nothing.
Run: python benchmarks/bench_asm.py [--lines N]
"""

from __future__ import annotations

import argparse
import random
import time

from assembler import assemble, disassemble
from isa.binary import read_binary, write_binary
from isa.encoding import decode, encode

BODY = [
    "    dma.load sram[BUF + {i} * 64], hbm[A + a0], bf16, 64, 64, stride=K",
    "    sem.signal dma, {s}",
    "    sem.wait mx, {s}",
    "    mm acc[0], sram[{i} * 0x100], sram[0x8000], 64, 64, 64, bf16, bf16, accum",
    "    v.add sram[0x9000], acc[0], sram[0xa000], 64, 64, bf16, fp32, bf16, row ; epilogue",
    "    v.gelu sram[0x9000], sram[0x9000], 64, 64, bf16, bf16",
    "    dma.store hbm[C + ({i} << 12) + a1], sram[0x9000], bf16, 64, 64, stride=N",
    "    v.scale sram[0x9000], sram[0x9000], 64, 64, bf16, bf16, 0.125",
    "; a comment line",
]


def program(lines: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    out = [".equ A, 0x1000_0000", ".equ C, 0x2000_0000", ".equ K, 4096", ".equ N, 4096",
           ".equ BUF, 0x4000"]
    while len(out) < lines - 3:
        if rng.random() < 0.02:
            n = len(out)
            out += [f"    loop 4, L{n}, a0, 128", *[BODY[rng.randrange(3)].format(i=1, s=2)
                                                   for _ in range(3)], f"L{n}:"]
        else:
            out.append(rng.choice(BODY).format(i=rng.randrange(16), s=rng.randrange(8)))
    return "\n".join(out + ["    halt"]) + "\n"


def distinct(lines: int) -> str:
    """The worst case for the parser: no two lines alike (every address differs)."""
    out = []
    for i in range(lines - 1):
        out.append(f"    dma.load sram[{i % 4096} * 64], hbm[0x{i:x} + a0], bf16, 64, "
                   f"{1 + i % 64}, stride={4096 + i}")
    return "\n".join(out + ["    halt"]) + "\n"


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:>12,.0f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=100_000)
    args = ap.parse_args()
    text = program(args.lines)
    n_lines = text.count("\n")
    t0 = time.perf_counter()
    prog = assemble(text, "bench.s")
    t1 = time.perf_counter()
    n = len(prog.instructions)
    print(f"assemble   {n_lines:,} lines ({n:,} instructions): {t1 - t0:6.2f} s, "
          f"{rate(n_lines, t1 - t0)} lines/s  (a kernel-like mix; lines repeat)")
    worst = distinct(args.lines // 5)
    t0 = time.perf_counter()
    assemble(worst, "distinct.s")
    t1 = time.perf_counter()
    print(f"assemble   {args.lines // 5:,} lines, all distinct: {t1 - t0:6.2f} s, "
          f"{rate(args.lines // 5, t1 - t0)} lines/s  (worst case: nothing repeats)")
    best_enc = best_dec = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        data = encode(prog.instructions)
        t1 = time.perf_counter()
        decode(data)
        t2 = time.perf_counter()
        best_enc, best_dec = min(best_enc, t1 - t0), min(best_dec, t2 - t1)
    print(f"encode     {n:,} instructions: {best_enc:6.3f} s, {rate(n, best_enc)} instructions/s")
    print(f"decode     {n:,} instructions: {best_dec:6.3f} s, {rate(n, best_dec)} instructions/s")
    t0 = time.perf_counter()
    again = read_binary(write_binary(prog))
    text2 = disassemble(again)
    t1 = time.perf_counter()
    print(f"bin+disasm {n:,} instructions: {t1 - t0:6.2f} s, {rate(n, t1 - t0)} instructions/s")
    assert write_binary(assemble(text2)) == write_binary(prog), "round trip broke"


if __name__ == "__main__":
    main()
