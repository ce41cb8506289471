"""Validate every measured file on its preset; print the error tables and time taken.

    python benchmarks/validate_all.py [--plots docs/validation] [--data tests/data/measured]
                                      [--intervals] [--cv]

Each file runs through ``tessera validate`` (its preset: the chip for h100/ and h200/
files, the 2-GPU system for the 2-GPU collectives); with ``--plots`` the predicted-vs-
measured figure of each goes into that folder. Files fall in two regimes:

* **fitted** — the files the preset parameters were fitted on (docs/validation.md): their
  error is in-sample;
* **held** — files no parameter was fitted on: other shapes (H200 GEMMs with few output
  tiles or unaligned leading dimensions, row-wise ops at other widths, copies at other
  sizes), whole models, another chip. Their error is the cross-validated one: fitted on
  one regime, measured on another. One exception: the H200's copy-engine rate
  (``copy_engine.bandwidth``) was fitted on the two copies of at least 512 MiB of
  h200/memory.csv (docs/validation.md).

With ``--intervals`` the held rows' measured / predicted ratios give each kind's p10 / p90
(``experiments/uncertainty.py``), written to experiments/data/intervals.json with their
coverage under a two-group cross-validation (quantiles from one group of rows, checked on
the other: GEMM rows aligned or not, row-wise ops by width, whole models by phase).
Files of a kind ``tessera validate`` does not predict are listed as such.

With ``--cv`` the calibration files are cross-validated as well: inside a file (``tessera
validate --cv``: each regime of a column held out in turn, the file's fitted parameters
refitted on the rest) or across two (``--fit-on``: fitted on GEMMs, the layers predicted);
in-sample and cross-validated MAPE side by side.
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
HELD = {"h200/gemm.csv", "h200/vector.csv", "h200/memory.csv", "h200/model_infer.csv"}
FILE_PRESET = {"collectives_w2": "h200x2", "tp_layers_w2": "h200x2"}


def preset_for(path: Path) -> str:
    return FILE_PRESET.get(path.stem, PRESETS.get(path.parent.name, path.parent.name))


# the files that take longest with an empty cache (wall seconds on 2 cores, docs/
# performance.md): started first, so the short ones fill the other core meanwhile
LONG = {"h200/train_layers.csv": 340, "h100/attention.csv": 215, "h200/train_step.csv": 190,
        "h200/iterations.csv": 105, "h200/model_infer.csv": 45}


def side_by_side(fn, work: list, jobs: int) -> list:  # noqa: ANN001
    """``fn`` over ``work``, ``jobs`` items at a time in processes of their own (results in
    the order they finish; each is printed by ``fn`` as it ends)."""
    if jobs < 2 or len(work) < 2:
        return [fn(w) for w in work]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(max_workers=jobs,
                             mp_context=multiprocessing.get_context("fork")) as pool:
        return [f.result() for f in as_completed([pool.submit(fn, w) for w in work])]


def run(data: Path, plots: Path | None, out: Path, only: str | None = None,
        jobs: int = 1) -> list[tuple]:
    """Every file's summary row, the files ``jobs`` at a time (longest first), each in a
    process of its own; rows in file order."""
    from experiments.validate import ValidateError, read_measured

    out.mkdir(parents=True, exist_ok=True)
    todo = []
    for csv in sorted(data.glob("*/*.csv")):
        if only and only not in csv.as_posix():
            continue
        try:
            read_measured(csv)
        except ValidateError:
            print(f"{csv.relative_to(data).as_posix()}: not a kind tessera validate predicts "
                  f"yet", flush=True)
            continue
        todo.append(csv)
    todo.sort(key=lambda c: -LONG.get(c.relative_to(data).as_posix(), 0))
    return sorted(side_by_side(one_file, [(csv, data, plots, out) for csv in todo], jobs))


def one_file(work: tuple) -> tuple:
    """``tessera validate`` on one file: (file, preset, kind, cases, skipped, MAPE, median,
    max, wall), printed as it ends."""
    csv, data, plots, out = work
    preset = preset_for(csv)
    args = ["validate", preset, str(csv), "--out", str(out / f"{csv.parent.name}_{csv.stem}.csv"),
            "--json"]
    if plots is not None:
        args += ["--plot", str(plots / f"{csv.parent.name}_{csv.stem}.png")]
    t0 = time.perf_counter()
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = tessera(args)
    wall = time.perf_counter() - t0
    name = csv.relative_to(data).as_posix()
    if code:
        print(f"{name}: error ({wall:.0f} s)", flush=True)
        return (name, preset, "error", "", "", "", "", "", wall)
    s = json.loads(buf.getvalue().strip().splitlines()[-1])
    print(f"{name}: MAPE {s['mape_pct']:.1f}% ({wall:.0f} s)", flush=True)
    return (name, preset, s["kind"], s["cases"], s["skipped"], s["mape_pct"],
            s["median_ape_pct"], s["max_ape_pct"], wall)


# calibration files cross-validated within (``--cv``): the column whose regimes are held out
# (``M:128,4096``: bands of M cut at 128 and 4096)
CV_COLUMNS = {"h100/gemm.csv": "M:128,4096", "h100/vector.csv": "H", "h100/memory.csv": "op",
              "h100/gemm_lowp.csv": "M", "h200x4/collectives_w2.csv": "bytes:1048576,67108864"}
# and across files (``--fit-on``): (file fitted on, file predicted, fields refitted) — the
# GEMM window was fitted on GEMMs and layers; fitted on the GEMMs alone, the layers are
# another regime (whole decoder layers, their eager kernels between the GEMMs)
CV_ACROSS = [("h100/gemm.csv", "h100/layers.csv", ("core.dma.gemm_window",))]


def cross_validate(data: Path, only: str | None = None, jobs: int = 1) -> None:
    """``tessera validate --cv`` on each file of CV_COLUMNS and ``--fit-on`` on each pair
    of CV_ACROSS (``jobs`` at a time, the bf16 GEMMs first: the longest); one table of both
    errors."""
    work = [(data, name, ["--cv", column], column) for name, column in CV_COLUMNS.items()]
    work += [(data, name, ["--fit-on", str(data / other), "--fit", *fields],
              f"fit on {other}") for other, name, fields in CV_ACROSS]
    work = [w for w in work if not only or only in w[1]]
    lines = ["| file | held out by | refitted | in-sample | cross-validated | wall |",
             "|---|---|---|---|---|---|"]
    lines += [line for _, line in sorted(side_by_side(one_cv, work, jobs))]
    print("\ncross-validated within the calibration files\n")
    print("\n".join(lines))


def one_cv(work: tuple) -> tuple[str, str]:
    """(file, its table line) of one cross-validation, printed as it ends."""
    data, name, extra, how = work
    csv = data / name
    t0 = time.perf_counter()
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = tessera(["validate", preset_for(csv), str(csv), *extra, "--json"])
    wall = time.perf_counter() - t0
    if code:
        print(f"{name}: cross-validation error ({wall:.0f} s)", flush=True)
        return name, f"| {name} | {how} | error | | | {wall:.0f} s |"
    s = json.loads(buf.getvalue().strip().splitlines()[-1])
    if "folds" in s:
        detail = ", ".join(f"{f['held']}: {f['held_mape_pct']:.1f}%" for f in s["folds"])
    else:
        detail = ", ".join(f"{p} = {v:.4g}" for p, v in s["fitted"].items())
    print(f"{name}: cross-validated ({how}): {s['mape_pct']:.1f}% ({wall:.0f} s)", flush=True)
    return name, (f"| {name} | {how} | {', '.join(s['params'])} | "
                  f"{s['in_sample_mape_pct']:.1f}% | {s['mape_pct']:.1f}% ({detail}) | "
                  f"{wall:.0f} s |")


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
    ap.add_argument("--intervals", action="store_true",
                    help="write each held kind's p10 / p90 (experiments/data/intervals.json)")
    ap.add_argument("--only", default=None,
                    help="run only the files whose path contains this text (e.g. h200/)")
    ap.add_argument("--cv", action="store_true",
                    help="also cross-validate the calibration files (CV_COLUMNS, CV_ACROSS)")
    ap.add_argument("--jobs", type=int, default=1,
                    help="files (and cross-validations) at once, each in its own process "
                         "(default 1: one after another, each file's pieces side by side on "
                         "the cores; docs/performance.md has why more was slower)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    rows = run(args.data, args.plots, args.out, args.only, args.jobs)
    print(f"\nevery file in {time.perf_counter() - t0:.0f} s ({args.jobs} at a time)")
    for label, mine in (("fitted on (in-sample)", [r for r in rows if r[0] not in HELD]),
                        ("held (cross-validated: nothing fitted on them but the H200's "
                         "copy-engine rate, on h200/memory.csv's two copies >= 512 MiB)",
                         [r for r in rows if r[0] in HELD])):
        if mine:
            print(f"\n{label}\n")
            print(table(mine))
    if args.cv:
        cross_validate(args.data, args.only, args.jobs)
    if args.intervals:
        intervals(args.out)


GROUPS = {  # kind -> a row's group for the two-group cross-validation of the intervals
    "gemm": lambda r: all(int(r[c]) % 8 == 0 for c in ("K", "N")),  # aligned or not
    "vector": lambda r: int(r["H"]) <= 2048,
    "memory": lambda r: int(r["bytes"]) <= 32 << 20,
    "model_infer": lambda r: r["phase"],
}
KIND_OF_FILE = {"gemm": "gemm", "vector": "vector", "memory": "memory",
                "model_infer": "model_infer"}


def intervals(out: Path) -> None:
    """Each held kind's p10 / p90 of measured / predicted, with its cross-validated
    coverage, into experiments/data/intervals.json."""
    import numpy as np
    import pandas as pd

    from experiments.uncertainty import INTERVALS, QUANTILES

    kinds = {}
    for name in sorted(HELD):
        stem = name.split("/")[1][:-4]
        pred = out / f"{name.split('/')[0]}_{stem}.csv"
        if not pred.exists():
            continue
        df = pd.read_csv(pred)
        df = df[df["predicted"].notna() & (df["predicted"] > 0)]
        ratio = (df["measured"] / df["predicted"]).to_numpy()
        lo, hi = (float(np.quantile(ratio, q)) for q in QUANTILES)
        groups = df.apply(GROUPS[stem], axis=1).to_numpy()
        inside, total = 0, 0
        for g in set(groups):  # quantiles from the other group, checked on this one
            fit, test = ratio[groups != g], ratio[groups == g]
            if len(fit) < 3:
                continue
            a, b = (np.quantile(fit, q) for q in QUANTILES)
            inside += int(((test >= a) & (test <= b)).sum())
            total += len(test)
        cover = inside / total if total else float("nan")
        kinds[KIND_OF_FILE[stem]] = {"p10": lo, "p90": hi, "rows": len(ratio),
                                     "coverage": cover}
        print(f"interval {stem}: measured/predicted p10 {lo:.2f} p90 {hi:.2f} over "
              f"{len(ratio)} rows; coverage under cross-validation {cover:.0%}")
        if stem == "model_infer":  # the error depends on the phase: an interval for each
            for phase in ("prefill", "decode"):
                mine = ratio[groups == phase]
                if len(mine) < 3:
                    continue
                a, b = (float(np.quantile(mine, q)) for q in QUANTILES)
                hits = 0
                for i in range(len(mine)):  # leave one row out: quantiles of the others
                    rest = np.delete(mine, i)
                    hits += int(np.quantile(rest, QUANTILES[0]) <= mine[i] <=
                                np.quantile(rest, QUANTILES[1]))
                kinds[f"model_infer.{phase}"] = {"p10": a, "p90": b, "rows": len(mine),
                                                 "coverage": hits / len(mine)}
                print(f"interval model_infer {phase}: p10 {a:.2f} p90 {b:.2f} over "
                      f"{len(mine)} rows; leave-one-out coverage {hits / len(mine):.0%}")
    INTERVALS.parent.mkdir(parents=True, exist_ok=True)
    INTERVALS.write_text(json.dumps({"presets": ["h200"], "kinds": kinds}, indent=1) + "\n")
    print(f"wrote {INTERVALS}")


if __name__ == "__main__":
    main()
