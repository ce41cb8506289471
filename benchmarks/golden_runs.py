"""A few fixed runs whose numbers must not move when code is only reorganised.

    python benchmarks/golden_runs.py            # print the figures and compare with the pins
    python benchmarks/golden_runs.py --write    # pin today's figures (after a model change)

The pins live in tests/data/golden_runs.json; tests/experiments/test_golden_runs.py checks
them on every test run. A change of the model (a new mechanism, a refit) moves them on
purpose: say so in the commit and re-pin.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PINS = ROOT / "tests" / "data" / "golden_runs.json"
# (name, model, chip or system, mode, batch, seq, ctx, tokens, options)
RUNS = [
    ("tiny-llama-edge-prefill", "tiny-llama", "edge", "prefill", 2, 16, 0, 1, {}),
    ("tiny-gpt2-edge-generate", "tiny-gpt2", "edge", "generate", 1, 8, 0, 4, {}),
    ("llama2-7b-tpuv4-decode", "llama2-7b", "tpuv4", "decode", 8, 512, 1024, 1, {}),
    ("llama2-7b-tpuv4-decode-int8", "llama2-7b", "tpuv4", "decode", 8, 512, 1024, 1,
     {"quant": "int8"}),
    ("tiny-llama-h100x4-tp4-decode", "tiny-llama", "system:h100x4", "decode", 4, 16, 32, 1,
     {"tp": 4}),
    ("tiny-mixtral-edge-ring16-ep", "tiny-mixtral", "system:edge-ring16", "decode", 16, 8,
     16, 1, {"dp": 4, "ep": 4, "tp": 4}),
]


# (name, preset, measured file, rows kept): a few rows of the calibration files, validated
VALIDATIONS = [
    ("validate-h100-gemm", "h100", "h100/gemm.csv", 3),
    ("validate-h100-vector", "h100", "h100/vector.csv", 4),
]


def validations() -> dict[str, dict[str, float]]:
    """The predicted milliseconds of the first rows of calibration files."""
    import tempfile

    import pandas as pd

    from experiments.validate import load_target, validate

    out = {}
    for name, preset, rel, rows in VALIDATIONS:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / Path(rel).name
            pd.read_csv(ROOT / "tests" / "data" / "measured" / rel).head(rows).to_csv(
                path, index=False)
            _, df = validate(load_target(preset), path)
        out[name] = {f"row{i}_ms": float(v) for i, v in enumerate(df["predicted"])}
    return out


def figures() -> dict[str, dict[str, float]]:
    """Latency, energy and HBM bytes of each fixed run, and the fixed validations."""
    from experiments.run import run_model
    try:
        from hardware.chips import load_chip
        from hardware.systems import load_system
    except ImportError:  # a checkout from before the hardware package (to take the pins)
        from simulator.config import load_chip  # type: ignore[no-redef]
        from simulator.system import load_system  # type: ignore[no-redef]
    from mapper.model import load_model
    from mapper.parallel import Parallel
    from mapper.pipeline import MapOptions

    out = {}
    for name, model, target, mode, batch, seq, ctx, tokens, opts in RUNS:
        par_keys = {k: opts.pop(k) for k in ("tp", "dp", "ep") if k in opts}
        system = par = None
        if target.startswith("system:"):
            system = load_system(target[7:])
            chip = system.chips[0]
            par = Parallel(par_keys.get("tp", 1), 1, par_keys.get("dp", 1), 1,
                           par_keys.get("ep", 1))
        else:
            chip = load_chip(target)
        rep = run_model(load_model(model), chip, mode, batch, seq, ctx, tokens,
                        MapOptions(**opts), system=system, par=par)
        head, totals = rep.headline(), rep.totals()
        out[name] = {"latency_s": head["latency_s"], "energy_j": head["energy_j"],
                     "hbm_bytes": totals["hbm_read_bytes"] + totals["hbm_write_bytes"]}
        opts.update(par_keys)
    return {**out, **validations()}


def main() -> int:
    got = figures()
    if "--write" in sys.argv:
        PINS.write_text(json.dumps(got, indent=2) + "\n")
        print(f"pinned {len(got)} runs in {PINS}")
        return 0
    pins = json.loads(PINS.read_text())
    worst = 0.0
    for name, figs in got.items():
        for key, v in figs.items():
            rel = abs(v - pins[name][key]) / max(abs(pins[name][key]), 1e-30)
            worst = max(worst, rel)
            print(f"{name:32s} {key:10s} {v:.6g}  pinned {pins[name][key]:.6g}  "
                  f"rel {rel:.2e}")
    print(f"largest relative difference: {worst:.2e}")
    return 0 if worst < 1e-9 else 1


if __name__ == "__main__":
    sys.exit(main())
