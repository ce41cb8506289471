"""Serving benchmarks: wall time of whole serving simulations on 2 cores.

    python benchmarks/bench_serve.py [--only fleet|capacity|interp] [--cache-dir DIR]

* ``fleet``: llama3-8b on one h200, 10,000 requests of the chat-shaped trace at a rate near
  capacity, vLLM-style chunked prefill, paged KV with preemption. The kernel costs are
  priced first (cold, timed separately); the 10,000-request run is then timed with a warm
  kernel cache. Prints wall seconds and iterations simulated per second.
* ``capacity``: the highest rate llama3-70b on h100x4 (TP4) serves within TTFT p99 <= 2 s
  and TBT p99 <= 100 ms (chat trace, 400 requests per probe); wall seconds, cold cache.
* ``interp``: the interpolated iteration price against pricing the iteration exactly, at
  off-grid batch mixes of llama3-8b on h200 (the bound docs/serving.md states).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time


def fleet() -> None:
    from experiments.api import chip, model
    from experiments.serve.run import ServeSpec, serve

    m, c = model("llama3-8b"), chip("h200")
    spec = ServeSpec(rate=9.0, requests=10_000, prompt_len="chat", seed=1)
    t = time.perf_counter()
    serve(m, c, None, ServeSpec(rate=9.0, requests=1500, prompt_len="chat", seed=2))
    cold = time.perf_counter() - t
    t = time.perf_counter()
    out, s = serve(m, c, None, spec)
    warm = time.perf_counter() - t
    print(f"fleet: llama3-8b on h200, chat trace at {spec.rate} req/s, {s['requests']} "
          f"requests, {s['iterations']} iterations")
    print(f"  pricing the kernels (1,500-request run, cold cache): {cold:.1f} s wall")
    print(f"  10,000 requests, warm kernel cache: {warm:.1f} s wall, "
          f"{s['iterations'] / warm:.0f} iterations simulated per second")
    print(f"  throughput {s['throughput_tok_s']:.0f} output tok/s, TTFT p50/p99 "
          f"{s['ttft_p50_s'] * 1e3:.0f}/{s['ttft_p99_s'] * 1e3:.0f} ms, TBT p50/p99 "
          f"{s['tbt_p50_s'] * 1e3:.1f}/{s['tbt_p99_s'] * 1e3:.1f} ms, mean batch "
          f"{s['mean_batch']:.1f}, KV peak {s['kv_peak']:.0%}, preemptions {s['preemptions']}")


def capacity() -> None:
    from experiments.api import model, system
    from experiments.serve.run import ServeSpec, find_capacity

    m, sys_ = model("llama3-70b"), system("h100x4")
    spec = ServeSpec(rate=1.0, requests=400, prompt_len="chat", tp=4, slo_ttft=2.0,
                     slo_tbt=0.1, seed=1)
    t = time.perf_counter()
    rate, best, probes = find_capacity(m, sys_.chips[0], sys_, spec)
    wall = time.perf_counter() - t
    print(f"capacity: llama3-70b on h100x4 TP4, TTFT p99 <= 2 s, TBT p99 <= 100 ms: "
          f"{rate:.2f} req/s ({len(probes)} probes of 400 requests), {wall:.1f} s wall")
    if best:
        print(f"  at capacity: {best['throughput_tok_s']:.0f} output tok/s, TTFT p99 "
              f"{best['ttft_p99_s']:.2f} s, TBT p99 {best['tbt_p99_s'] * 1e3:.1f} ms")


def interp() -> None:
    from experiments.api import chip, model
    from experiments.iteration import Iteration, price
    from experiments.serve.cost import IterationModel

    m, c = model("llama3-8b"), chip("h200")
    im = IterationModel(m, c)
    cases = [([(300, 0)], []), ([(700, 0)], []), ([(1500, 0)], []), ([], [700] * 5),
             ([], [1300] * 20), ([], [3000] * 100), ([(100, 300)], [500] * 10),
             ([(450, 0)], [1500] * 40), ([(1000, 2000)], [900] * 70)]
    worst = 0.0
    for pre, dec in cases:
        a = im.price(pre, dec).time_s
        e = price(m, c, Iteration(tuple(pre), tuple(dec))).time_s
        err = 100 * (a - e) / e
        worst = max(worst, abs(err))
        print(f"  prefill {pre} + {len(dec)} decodes at {dec[0] if dec else '-'}: "
              f"interpolated {a * 1e3:.3f} ms, exact {e * 1e3:.3f} ms ({err:+.2f}%)")
    print(f"interp: worst |error| {worst:.2f}% over {len(cases)} off-grid iterations")


CASES = {"fleet": fleet, "capacity": capacity, "interp": interp}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=list(CASES))
    ap.add_argument("--cache-dir", help="kernel-cost cache (default: a new empty folder)")
    args = ap.parse_args()
    os.environ["TESSERA_CACHE_DIR"] = args.cache_dir or tempfile.mkdtemp(prefix="bench-serve-")
    for name, fn in CASES.items():
        if args.only in (None, name):
            fn()


if __name__ == "__main__":
    main()
