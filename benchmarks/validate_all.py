"""Validate every calibration file on its preset; print the error table and time taken.

    python benchmarks/validate_all.py [--plots docs/validation] [--data tests/data/measured]

Each file runs through ``tessera validate`` (its preset: the chip for h100/ files, the
2-GPU system for the 2-GPU collectives); with ``--plots`` the predicted-vs-measured figure
of each goes into that folder. The table is what docs/validation.md reports.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import time
from pathlib import Path

from experiments.cli import main as tessera

PRESETS = {"h100": "h100", "h200": "h200", "h200x4": "h200x4"}
FILE_PRESET = {"collectives_w2": "h200x2", "tp_layers_w2": "h200x2"}


def preset_for(path: Path) -> str:
    return FILE_PRESET.get(path.stem, PRESETS.get(path.parent.name, path.parent.name))


def run(data: Path, plots: Path | None, out: Path) -> list[tuple]:
    rows = []
    out.mkdir(parents=True, exist_ok=True)
    for csv in sorted(data.glob("*/*.csv")):
        preset = preset_for(csv)
        args = [
            "validate", preset, str(csv), "--out", str(out / f"{csv.parent.name}_{csv.stem}.csv"),
            "--json"]
        if plots is not None:
            args += ["--plot", str(plots / f"{csv.parent.name}_{csv.stem}.png")]
        t0 = time.perf_counter()
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            code = tessera(args)
        wall = time.perf_counter() - t0
        if code:
            rows.append((csv.relative_to(data).as_posix(), preset, "error", "", "", "", "",
                         wall))
            continue
        s = json.loads(buf.getvalue().strip().splitlines()[-1])
        rows.append((csv.relative_to(data).as_posix(), preset, s["kind"], s["cases"],
                     s["skipped"], s["mape_pct"], s["median_ape_pct"], s["max_ape_pct"], wall))
        print(f"{rows[-1][0]}: MAPE {s['mape_pct']:.1f}% ({wall:.0f} s)", flush=True)
    return rows


def table(rows: list[tuple]) -> str:
    lines = ["| file | preset | kind | rows | skipped | MAPE | median | max | wall |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r[2] == "error":
            lines.append(f"| {r[0]} | {r[1]} | error | | | | | | {r[-1]:.0f} s |")
            continue
        lines.append(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]} | {r[5]:.1f}% | "
                     f"{r[6]:.1f}% | {r[7]:.1f}% | {r[8]:.0f} s |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("tests/data/measured"))
    ap.add_argument("--plots", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=Path("results/validation"))
    args = ap.parse_args()
    rows = run(args.data, args.plots, args.out)
    print()
    print(table(rows))


if __name__ == "__main__":
    main()
