"""The compiled event core against the SimPy engine: wall time and equal results.

    python benchmarks/bench_compiled.py [--chip h100] [--seq 32768] [--simpy]

Kernels: one causal attention prefill of ``--seq`` tokens (32 heads, D = 128), a decode
attention of 32 sequences at 32k context, an 8192^3 GEMM, each lowered once and simulated
(every run the power cap needs) with the compiled core. With ``--simpy`` each is also
simulated by the SimPy engine (with its steady-state shortcut; minutes for a 32k prefill)
and the two results compared field by field, both timed after an untimed run that fills
the per-program tables they share. Wall times exclude lowering, printed apart;
the whole process of one 32k prefill is ``/usr/bin/time python benchmarks/bench_compiled.py
--only prefill``. Peak RSS at the end.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import time


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--chip", default="h100")
    p.add_argument("--seq", type=int, default=32768)
    p.add_argument("--simpy", action="store_true", help="also run the SimPy engine, compare")
    p.add_argument("--only", choices=["prefill", "decode", "gemm"], help="one kernel")
    a = p.parse_args()
    os.environ["TESSERA_NO_CACHE"] = "1"  # time the simulations, not the cache
    from experiments import api
    from experiments import measured_work as mw
    from experiments.run import confirmer
    from mapper.lower import lower
    from simulator.engine import compiled
    from simulator.engine.machine import RunLimits
    from simulator.run import simulate

    if not compiled.AVAILABLE:
        raise SystemExit("the compiled core is not built (no C compiler at install?)")
    chip = api.chip(a.chip)
    cases = [("prefill", f"causal attention prefill {a.seq}",
              lambda: mw.attention_graph(1, 32, 32, a.seq, a.seq, 128, True)),
             ("decode", "decode attention 32 x 32k",
              lambda: mw.attention_graph(32, 32, 32, 1, 32768, 128, False)),
             ("gemm", "gemm 8192^3 bf16", lambda: mw.gemm_graph("bf16", 8192, 8192, 8192))]
    for key, name, graph in cases:
        if a.only and key != a.only:
            continue
        t0 = time.perf_counter()
        kernels = lower(graph(), chip, confirm=confirmer(chip)).kernel_programs
        t_low = time.perf_counter() - t0
        modes = [("compiled", RunLimits())] + ([("simpy", RunLimits(compiled=False))]
                                               if a.simpy else [])
        got = {}
        if a.simpy:  # fill the per-program tables (streams, bounds) both engines use
            for k in kernels:
                simulate(k, chip, _store=False)
        for label, limits in modes:
            t0 = time.perf_counter()
            res = [simulate(k, chip, limits=limits, _store=False) for k in kernels]
            got[label] = (time.perf_counter() - t0, res)
            print(f"{name}: {label:8s} {got[label][0]:7.2f} s simulation (+{t_low:.2f} s "
                  f"lowering), {sum(r.time_s for r in res) * 1e3:.4f} ms simulated, "
                  f"{sum(r.instructions for r in res):,} instructions", flush=True)
        if "simpy" in got:
            worst = max(_largest_difference(x, y) for x, y in zip(got["compiled"][1],
                                                                    got["simpy"][1]))
            print(f"  compiled {got['simpy'][0] / got['compiled'][0]:.1f}x faster; largest "
                  f"relative difference of any figure {worst:.1e}")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


def _largest_difference(x, y) -> float:  # noqa: ANN001
    """The largest relative difference between two results' numbers, field by field."""
    worst = 0.0

    def walk(u, v) -> None:  # noqa: ANN001
        nonlocal worst
        if isinstance(u, dict):
            for k in u:
                walk(u[k], v[k])
        elif isinstance(u, (int, float)) and not isinstance(u, bool) and u != v:
            worst = max(worst, abs(u - v) / max(abs(u), abs(v)))
    walk(dataclasses.asdict(x), dataclasses.asdict(y))
    return worst


if __name__ == "__main__":
    main()
