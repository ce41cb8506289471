"""Multi-chip runs: wall time and simulated latency of the issue's three cases.

llama3-70b decode (batch 16, ctx 2048) on 4 chips TP4; gpt3-175b prefill (batch 1, seq
2048) on 8 chips TP8; a whole gpt3-175b generation (prefill 2048 + 128 decode tokens) on 8
chips TP8 (decode simulated at 8 context lengths, interpolated). Prints figures only.
Run: python benchmarks/bench_multichip.py
"""

from __future__ import annotations

import time

from experiments.run import run_model
from hardware.systems import load_system
from mapper.model import load_model
from mapper.parallel import Parallel
from mapper.pipeline import MapOptions

CASES = [
    ("llama3-70b", "h100x4", 4, "decode", 16, 1, 2048, 1),
    ("gpt3-175b", "h100x8", 8, "prefill", 1, 2048, 0, 1),
    ("gpt3-175b", "h100x8", 8, "generate", 1, 2048, 0, 128),
]


def main() -> None:
    for model_name, sys_name, tp, mode, batch, seq, ctx, tokens in CASES:
        model, system = load_model(model_name), load_system(sys_name)
        t0 = time.perf_counter()
        # GPT-3's learned positions end at 2048; the issue's generation runs 128 past them
        rep = run_model(model, system.chips[0], mode, batch, seq, ctx, tokens, MapOptions(),
                        system=system, par=Parallel(tp=tp), allow_long_context=True)
        wall = time.perf_counter() - t0
        head = rep.headline()
        extra = (f", TTFT {head['ttft_s'] * 1e3:.1f} ms, TPOT {head['tpot_s'] * 1e3:.2f} ms"
                 if mode == "generate" else "")
        print(f"{model_name:11} {mode:8} TP{tp} on {sys_name}: simulated "
              f"{head['latency_s'] * 1e3:9.2f} ms{extra}; wall {wall:6.1f} s")


if __name__ == "__main__":
    main()
