"""A 1,000-point sweep of llama2-7b decode on the h100 preset (HBM bandwidth x batch x
context), two local workers, an empty kernel-cost cache; prints the wall time.

    python benchmarks/bench_sweep1000.py

Ten HBM bandwidths make ten chips, so every (batch, context) is simulated cold on each;
points whose batch does not fit at their context fail fast with the memory-fit line.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

SPEC = {
    "name": "bench1000",
    "base": {"model": "llama2-7b", "chip": "h100", "phase": "decode", "batch": 8, "ctx": 1024},
    "parameters": {
        "chip.hbm.bandwidth": {"log": ["1 TB/s", "6 TB/s"], "count": 10},
        "batch": [1, 2, 4, 8, 16, 32, 48, 64, 96, 128],
        "ctx": [256, 512, 1024, 2048, 4096, 8192, 515, 1031, 2059, 4109],
    },
}


def main() -> None:
    os.environ["TESSERA_CACHE_DIR"] = tempfile.mkdtemp(prefix="bench-sweep-")
    from experiments.sweep.runner import run_sweep
    from experiments.sweep.spec import sweep_from_dict

    spec = sweep_from_dict(SPEC, "bench1000.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        df = run_sweep(spec, Path(tmp), workers=2, progress=False)
        wall = time.perf_counter() - t0
    ok = int((df["status"] == "ok").sum())
    print(f"{len(df)} points ({ok} ok, {len(df) - ok} refused by the memory check) in "
          f"{wall:.1f} s on 2 workers ({wall / len(df):.2f} s a point)")


if __name__ == "__main__":
    main()
