"""Simulator throughput: dynamic instructions per wall-clock second in performance mode.

A double-buffered tile loop (DMA load, semaphores, matmul, vector ops) is run for two loop
counts on the edge preset; peak memory is read from the OS. Prints figures; asserts nothing.
Run: python benchmarks/bench_sim.py [--iterations N]
"""

from __future__ import annotations

import argparse
import resource
import time

from hardware.chips import load_chip
from isa import DType, MemRef, Program, Space, build
from simulator.run import simulate

S, H, A = Space.SRAM, Space.HBM, Space.ACC


def tile_loop(iterations: int) -> Program:
    """Per iteration: 10 dynamic instructions across the DMA, matrix and vector engines."""
    body = [
        build("sem.wait", "dma", 1),
        build("dma.load", MemRef(S, 0), MemRef(H, 0, 0), DType.BF16, 32, 64, stride=4096),
        build("sem.signal", "dma", 0),
        build("sem.wait", "mx", 0),
        build("mm", MemRef(A, 0), MemRef(S, 0), MemRef(S, 0x4000), 32, 64, 32, "bf16", "bf16",
              "accum"),
        build("sem.signal", "mx", 1),
        build("sem.signal", "mx", 2),
        build("sem.wait", "vec", 2),
        build("v.gelu", MemRef(S, 0x8000), MemRef(A, 0), 32, 32, "bf16", "fp32"),
        build("v.add", MemRef(S, 0x8000), MemRef(S, 0x8000), MemRef(S, 0x9000), 32, 32, "bf16",
              "bf16", "bf16"),
    ]
    head = [build("sem.signal", "mx", 1), build("loop", iterations, 2 + len(body), "a0", 128)]
    return Program(tuple(head + body + [build("halt")]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=100_000)
    args = ap.parse_args()
    chip = load_chip("edge")
    for n in (args.iterations // 10, args.iterations):
        prog = tile_loop(n)
        t0 = time.perf_counter()
        r = simulate(prog, chip)
        wall = time.perf_counter() - t0
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{r.instructions:>10,} dynamic instructions ({len(prog)} static): "
              f"{wall:6.2f} s wall, {r.instructions / wall:>9,.0f} instructions/s, "
              f"simulated {r.time_s * 1e3:.3f} ms, peak RSS {rss:.0f} MiB")


if __name__ == "__main__":
    main()
