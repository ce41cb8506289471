"""Training-step benchmarks: wall time of one simulated step, with an empty kernel cache.

    python benchmarks/bench_train.py [--only llama3-70b|gpt3-175b|llama-1b]

* llama3-70b on h100-1024 (128 nodes x 8): TP8 x PP8 x DP16, ZeRO-1, sequence 4096,
  global batch 1,024, micro-batch 1, interleaved 1F1B with 2 virtual stages;
* gpt3-175b on h100-1024, split as Megatron-LM's SC'21 runs of that size (TP8 x PP8, the
  rest data-parallel: DP16), batch 1,536, micro-batch 1, sequence 2048, interleaved 1F1B
  with 2 virtual stages;
* llama-1b on one h200 as the measured train_step row (micro-batch 4, sequence 2048).

Prints wall seconds (cold cache, then warm), step time, MFU and memory per chip.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

CASES = {
    "llama3-70b": ("llama3-70b", "h100-1024", dict(micro_batch=1, seq=4096, global_batch=1024,
                                                   tp=8, pp=8, dp=16, zero=1,
                                                   schedule="interleaved", virtual_stages=2)),
    "gpt3-175b": ("gpt3-175b", "h100-1024", dict(micro_batch=1, seq=2048, global_batch=1536,
                                                 tp=8, pp=8, dp=16, zero=1,
                                                 schedule="interleaved", virtual_stages=2)),
    "llama-1b": ("llama-1b", "h200", dict(micro_batch=4, seq=2048, recipe="pytorch")),
}


def run(name: str) -> None:
    from experiments.train.step import TrainSpec, train_step
    from experiments.train.summary import summary
    from hardware.chips import list_presets, load_chip
    from hardware.systems import load_system
    from mapper.model import load_model

    model_name, target, kw = CASES[name]
    model = load_model(model_name)
    if target in list_presets():
        chip, system = load_chip(target), None
    else:
        system = load_system(target)
        chip = system.chips[0]
    for label in ("cold", "warm"):
        t0 = time.perf_counter()
        r = train_step(model, TrainSpec(**kw), chip, system, target)
        wall = time.perf_counter() - t0
        print(f"{name} on {target} ({label} cache): {wall:.1f} s wall; step "
              f"{r.step_s * 1e3:.1f} ms, MFU {100 * r.mfu:.1f}%, memory per chip "
              f"{r.memory.total / 1e9:.1f} GB", flush=True)
    print(summary(r))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=sorted(CASES))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        os.environ["TESSERA_CACHE_DIR"] = cache  # an empty kernel-cost cache
        for name in [args.only] if args.only else list(CASES):
            run(name)


if __name__ == "__main__":
    main()
