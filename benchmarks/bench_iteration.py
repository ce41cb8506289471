"""Pricing serving iterations from kernel costs: cold (kernels simulated as first met) and
warm (every kernel known), for a model on a chip.

    python benchmarks/bench_iteration.py [--model llama3-8b] [--chip h200] [--distinct 30]

Draws ``--distinct`` random iterations (prefill chunks of 128/256/512 tokens, 1-8 decode
sequences at contexts that are multiples of 512), prices each once cold, then all of them
again 20 times warm; prints the cold total, the warm median per iteration and peak RSS.
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
    p.add_argument("--distinct", type=int, default=30)
    a = p.parse_args()
    os.environ.setdefault("TESSERA_CACHE_DIR", tempfile.mkdtemp(prefix="bench-iter-"))
    from experiments.iteration import Iteration, price
    from hardware.chips import load_chip
    from mapper.model import load_model

    model, chip = load_model(a.model), load_chip(a.chip)
    rng = random.Random(0)
    its = [Iteration(tuple((rng.choice([128, 256, 512]), 0) for _ in range(rng.randint(0, 1))),
                     tuple(512 * rng.randint(1, 4) for _ in range(rng.randint(1, 8))))
           for _ in range(a.distinct)]
    t0 = time.perf_counter()
    for it in its:
        price(model, chip, it)
    cold = time.perf_counter() - t0
    from experiments import iteration

    warm, repeat = [], []
    for _ in range(20):
        iteration._ITERATIONS.clear()  # composed again from its known parts
        for it in its:
            t = time.perf_counter()
            price(model, chip, it)
            warm.append(time.perf_counter() - t)
        for it in its:  # the same composition again
            t = time.perf_counter()
            price(model, chip, it)
            repeat.append(time.perf_counter() - t)
    print(f"{a.model} on {a.chip}: {a.distinct} distinct iterations priced cold in {cold:.1f} s "
          f"({cold / a.distinct:.2f} s each); composed from known segments median "
          f"{statistics.median(warm) * 1e6:.0f} us, repeated iteration median "
          f"{statistics.median(repeat) * 1e6:.1f} us, over {len(warm)} each; peak RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
