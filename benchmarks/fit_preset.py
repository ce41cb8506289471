"""Fit a few chip parameters of a preset to a measured file, and print them.

How the fitted values in the GPU presets were obtained (docs/validation.md): a coordinate
descent on log-scale multipliers of the named parameters, minimizing the mean absolute
percentage error of ``tessera validate`` on one calibration file. The result is printed,
not written: a person copies it into the preset with a comment saying what it was fitted on.

    python benchmarks/fit_preset.py h100 ../measured/h100/vector.csv \\
        core.vector.op_cycles.norm core.vector.row_cycles.norm ...
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from experiments.measured_work import Target
from experiments.validate import load_target, summary, validate
from hardware.chips import chip_from_dict, chip_to_dict

STEPS = (2.0, 1.25, 1.06)  # multiplicative step sizes, coarse to fine


def get(data: dict, dotted: str) -> float:
    node = data
    for part in dotted.split("."):
        node = node[part]
    return float(node)


def put(data: dict, dotted: str, value: float) -> None:
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def mape(target: Target, data: dict, csv: Path) -> float:
    chip = chip_from_dict(data, "fit")
    kind, df = validate(Target(target.name, chip, target.system), csv)
    return summary(kind, df)["mape_pct"]


def fit(target: Target, csv: Path, params: list[str], rounds: int) -> dict[str, float]:
    data = chip_to_dict(target.chip)
    best = mape(target, data, csv)
    print(f"start: MAPE {best:.2f}%", flush=True)
    for step in STEPS:
        for _ in range(rounds):
            improved = False
            for p in params:
                for factor in (step, 1 / step):
                    trial = chip_to_dict(chip_from_dict(data, "fit"))
                    old = get(trial, p)
                    put(trial, p, old * factor if old else factor - 1)
                    err = mape(target, trial, csv)
                    if err < best - 1e-6:
                        best, data, improved = err, trial, True
                        print(f"  {p} = {get(data, p):.4g}: MAPE {best:.2f}%", flush=True)
                        break
            if not improved:
                break
    return {p: get(data, p) for p in params} | {"mape_pct": best}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("preset")
    ap.add_argument("measured", type=Path)
    ap.add_argument("params", nargs="+", help="dotted chip fields to fit")
    ap.add_argument("--rounds", type=int, default=4)
    args = ap.parse_args(argv)
    result = fit(load_target(args.preset), args.measured, args.params, args.rounds)
    for name, value in result.items():
        print(f"{name}: {value:.4g}" if math.isfinite(value) else f"{name}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
