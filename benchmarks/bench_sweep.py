"""Sweep throughput: a 200-point sweep of llama2-7b decode on 1 and on 2 local workers.

Points per minute for each, and the speed-up. Prints figures only.
Run: python benchmarks/bench_sweep.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from experiments.sweep.runner import run_sweep
from experiments.sweep.spec import sweep_from_dict

SPEC = {
    "name": "bench200",
    "base": {"model": "llama2-7b", "chip": "tpuv4", "phase": "decode", "batch": 8,
             "ctx": 1024},
    "parameters": {
        "chip.hbm.bandwidth": {"log": ["200 GB/s", "3 TB/s"], "count": 10},
        "chip.core.array.rows,chip.core.array.cols": [[32, 32], [64, 64], [128, 128],
                                                      [192, 192], [256, 256]],
        "mapping.quant": [None, "int8", "int4", "fp8"],
    },
}


def main() -> None:
    spec = sweep_from_dict(SPEC, "bench200.yaml")
    assert spec.size() == 200
    rates = {}
    for workers in (1, 2):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            df = run_sweep(spec, Path(tmp), workers=workers, progress=False)
            wall = time.perf_counter() - t0
        ok = int((df["status"] == "ok").sum())
        rates[workers] = len(df) / wall * 60
        print(f"{workers} worker(s): {len(df)} points ({ok} ok) in {wall:6.1f} s = "
              f"{rates[workers]:6.1f} points/minute")
    print(f"speed-up with 2 workers: {rates[2] / rates[1]:.2f}x")


if __name__ == "__main__":
    main()
