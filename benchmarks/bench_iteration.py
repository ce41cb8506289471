"""Pricing serving iterations from kernel costs: the median over many random iterations,
each a new composition priced from kernels already known, for a model on a chip.

    python benchmarks/bench_iteration.py [--model llama3-8b] [--chip h200] [--draws 10000]

Draws ``--draws`` random iterations (0-1 prefill chunk of 128/256/512 tokens, 1-8 decode
sequences at contexts that are multiples of 512, up to 2048). A first pass prices every
one, simulating each kernel the first time it is met (what a cold serving run does; its
wall time is printed). The second pass prices all of them again, each after forgetting
every iteration priced (so that none is found as a whole): each is composed from its known
segments (shared kernels by token count,
each segment's own, the head), without building a graph. Prints that pass's median and
90th percentile per iteration, the median of one iteration priced again as it is, and peak
RSS. ``--distinct N`` draws N iterations and repeats them (the earlier form of this
benchmark).
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import tempfile
import time


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="llama3-8b")
    p.add_argument("--chip", default="h200")
    p.add_argument("--draws", type=int, default=10_000, help="random iterations")
    p.add_argument("--distinct", type=int, default=0,
                   help="draw this many iterations and price them 20 times over instead")
    a = p.parse_args()
    os.environ.setdefault("TESSERA_CACHE_DIR", tempfile.mkdtemp(prefix="bench-iter-"))
    from experiments import iteration
    from experiments.iteration import Iteration, price
    from hardware.chips import load_chip
    from mapper.model import load_model

    model, chip = load_model(a.model), load_chip(a.chip)
    rng = random.Random(0)
    n = a.distinct or a.draws
    its = [Iteration(tuple((rng.choice([128, 256, 512]), 0) for _ in range(rng.randint(0, 1))),
                     tuple(512 * rng.randint(1, 4) for _ in range(rng.randint(1, 8))))
           for _ in range(n)]
    t0 = time.perf_counter()
    for it in its:
        price(model, chip, it)
    cold = time.perf_counter() - t0
    composed, repeat = [], []
    for _ in range(20 if a.distinct else 1):
        for it in its:
            iteration._ITERATIONS.clear()  # each composed again from its known parts
            t = time.perf_counter()
            price(model, chip, it)
            composed.append(time.perf_counter() - t)
    for it in its[:1000]:  # an iteration priced again as it is
        price(model, chip, it)
        t = time.perf_counter()
        price(model, chip, it)
        repeat.append(time.perf_counter() - t)
    deciles = statistics.quantiles(composed, n=10)
    print(f"{a.model} on {a.chip}: {n} random iterations, the first pass (kernels simulated "
          f"as first met) {cold:.1f} s; composed from known segments median "
          f"{statistics.median(composed) * 1e6:.0f} us, 90th percentile {deciles[-1] * 1e6:.0f} "
          f"us, over {len(composed)}; the same iteration again median "
          f"{statistics.median(repeat) * 1e6:.1f} us; peak RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
