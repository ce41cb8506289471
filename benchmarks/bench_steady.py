"""The steady-state shortcut of the SimPy engine: long kernels simulated event by event and
with whole periods skipped, their wall times and their results (which must agree).

    python benchmarks/bench_steady.py [--chip h100] [--seq 32768] [--full]

Kernels: one causal attention prefill of ``--seq`` tokens (32 heads, D = 128), a decode
attention of 32 sequences at 32k context, a 8192^3 GEMM. ``--full`` also runs each event by
event (minutes for the 32k prefill) to print the speed-up; without it only the shortcut runs.
Peak RSS at the end.
"""

from __future__ import annotations

import argparse
import os
import resource
import time


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--chip", default="h100")
    p.add_argument("--seq", type=int, default=32768)
    p.add_argument("--full", action="store_true", help="also simulate every event")
    a = p.parse_args()
    os.environ["TESSERA_NO_CACHE"] = "1"  # time the simulations, not the cache
    from experiments import api
    from experiments import measured_work as mw
    from experiments.run import confirmer
    from mapper.lower import lower
    from simulator.engine.machine import RunLimits
    from simulator.engine.steady import STATS
    from simulator.run import simulate

    chip = api.chip(a.chip)
    cases = [(f"causal attention prefill {a.seq}",
              mw.attention_graph(1, 32, 32, a.seq, a.seq, 128, True)),
             ("decode attention 32 x 32k", mw.attention_graph(32, 32, 32, 1, 32768, 128, False)),
             ("gemm 8192^3 bf16", mw.gemm_graph("bf16", 8192, 8192, 8192))]
    for name, graph in cases:
        t0 = time.perf_counter()
        kernels = lower(graph, chip, confirm=confirmer(chip)).kernel_programs
        t_low = time.perf_counter() - t0
        # the SimPy engine: the compiled core (bench_compiled.py) never skips
        modes = [("steady", RunLimits(compiled=False))] + (
            [("full", RunLimits(steady_state=False, compiled=False))] if a.full else [])
        got = {}
        for label, limits in modes:
            before = STATS.skipped_ns
            t0 = time.perf_counter()
            res = [simulate(k, chip, limits=limits, _store=False) for k in kernels]
            wall = time.perf_counter() - t0
            got[label] = (wall, res)
            skipped = (STATS.skipped_ns - before) * 1e-6
            print(f"{name}: {label:6s} {wall:7.2f} s simulation (+{t_low:.2f} s lowering), "
                  f"{sum(r.time_s for r in res) * 1e3:.4f} ms simulated, "
                  f"{sum(r.instructions for r in res):,} instructions"
                  + (f", {skipped:.3f} ms of simulated time skipped (over every run the "
                     f"power cap needs)" if label == "steady" else ""), flush=True)
        if "full" in got:
            fast, full = got["steady"][1], got["full"][1]
            rel = max(abs(x.time_s - y.time_s) / y.time_s for x, y in zip(fast, full))
            print(f"  speed-up {got['full'][0] / got['steady'][0]:.1f}x; largest time "
                  f"difference {rel:.1e} (relative)")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
