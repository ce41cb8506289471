"""The kernel-cost cache: the same run cold (empty cache) and warm, and their figures.

    python benchmarks/bench_cache.py [--model llama2-7b] [--chip h100] [--seq 2048]

Prints the wall time of each, the speed-up and the number of simulations reused; the
latency and energy must be identical (a hit is the simulation's own result).
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="llama2-7b")
    p.add_argument("--chip", default="h100")
    p.add_argument("--seq", type=int, default=2048)
    a = p.parse_args()
    os.environ["TESSERA_CACHE_DIR"] = tempfile.mkdtemp(prefix="bench-cache-")
    from experiments import api
    from simulator.cache import CostCache, current

    figures = []
    for label in ("cold", "warm"):
        if label == "warm":  # a new process would start with an empty memory: drop it
            current().memory.clear()
        before = current().stats.hits, current().stats.misses
        t0 = time.perf_counter()
        rep = api.run(a.model, a.chip, phase="prefill", seq=a.seq)
        wall = time.perf_counter() - t0
        hits, misses = (current().stats.hits - before[0], current().stats.misses - before[1])
        figures.append((label, wall, rep.headline()))
        print(f"{label}: {wall:6.2f} s wall, {hits} of {hits + misses} simulations reused, "
              f"latency {rep.headline()['latency_s']:.6g} s")
    assert figures[0][2] == figures[1][2], "a warm run must give the same figures"
    print(f"speed-up {figures[0][1] / figures[1][1]:.1f}x; cache "
          f"{CostCache(current().folder).info()['bytes'] / 1e6:.2f} MB; peak RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
