"""Mapper + simulator on llama2-7b / H100: simulated time per layer and wall times.

Decode at batch 1, 8, 32 against a 2048-token KV cache, and prefill of 2048 tokens; one
layer is mapped and simulated (every layer is identical). Prints figures; asserts nothing.
Run: python benchmarks/bench_mapper.py [--model M] [--chip C]
"""

from __future__ import annotations

import argparse

from experiments.run import run_phase
from hardware.chips import load_chip
from mapper.layers import Phase
from mapper.model import load_model
from mapper.pipeline import MapOptions

PHASES = [Phase("decode", 1, ctx=2048), Phase("decode", 8, ctx=2048),
          Phase("decode", 32, ctx=2048), Phase("prefill", 1, seq=2048)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="llama2-7b")
    ap.add_argument("--chip", default="h100")
    args = ap.parse_args()
    model, chip = load_model(args.model), load_chip(args.chip)
    print(f"{model.name} on {chip.name}: one layer mapped and simulated")
    print(f"{'phase':8} {'batch':>5} {'seq/ctx':>7} {'layer':>10} {'model':>10} {'MAC util':>8} "
          f"{'instr':>10} {'map wall':>9} {'sim wall':>9} {'total':>7}")
    for ph in PHASES:
        r = run_phase(model, chip, ph, MapOptions())
        size = ph.seq if ph.kind == "prefill" else ph.ctx
        print(f"{ph.kind:8} {ph.batch:5d} {size:7d} {r.layer.time_s * 1e6:8.1f}us "
              f"{r.latency_s * 1e3:8.2f}ms {100 * r.layer.mac_utilization:7.1f}% "
              f"{r.layer.instructions:10,} {r.map_wall_s:8.2f}s {r.sim_wall_s:8.2f}s "
              f"{r.map_wall_s + r.sim_wall_s:6.2f}s")


if __name__ == "__main__":
    main()
