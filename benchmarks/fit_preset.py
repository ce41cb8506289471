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

from experiments.fit import fit
from experiments.validate import load_target, read_measured


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("preset")
    ap.add_argument("measured", type=Path)
    ap.add_argument("params", nargs="+", help="dotted chip fields to fit")
    ap.add_argument("--rounds", type=int, default=4)
    args = ap.parse_args(argv)
    kind, rows = read_measured(args.measured)
    fitted, best = fit(load_target(args.preset), kind, rows, args.params, args.rounds,
                       lambda line: print(line, flush=True))
    for name, value in (fitted | {"mape_pct": best}).items():
        print(f"{name}: {value:.4g}" if math.isfinite(value) else f"{name}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
