"""``tessera sweep``: run a design-space sweep; results stream to a file as points finish."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep", help="run a design-space sweep from a YAML file",
        description="Run every point of SWEEP.yaml (grid, random sample, or Optuna search) "
                    "on a local process pool or a Dask cluster. Each finished point is "
                    "appended to OUT/results.jsonl at once; --resume runs only the missing "
                    "points; a failing point becomes a row with its error.")
    p.add_argument("sweep", type=Path, help="the sweep file")
    p.add_argument("--out", type=Path, help="results folder (default results/<sweep name>)")
    p.add_argument("--workers", type=int, default=2, help="local worker processes (default 2)")
    p.add_argument("--dask", metavar="tcp://HOST:PORT", help="run on this Dask scheduler")
    p.add_argument("--resume", action="store_true", help="keep finished points, run the rest")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from experiments.sweep.runner import front_table, run_sweep
    from experiments.sweep.spec import load_sweep

    spec = load_sweep(args.sweep)
    out = args.out or Path("results") / spec.name
    if args.workers < 1:
        from experiments.sweep.spec import SweepError

        raise SweepError(f"--workers must be at least 1, got {args.workers}")
    table = run_sweep(spec, out, args.workers, args.dask, args.resume, not args.no_progress)
    ok = int((table["status"] == "ok").sum()) if len(table) else 0
    print(f"{spec.name}: {len(table)} points ({ok} ok, {len(table) - ok} failed or timed "
          f"out) -> {out / 'results.csv'}")
    if not ok:
        from experiments.sweep.spec import SweepError

        reason = str(table["error"].iloc[0]) if len(table) and "error" in table else ""
        raise SweepError(f"{args.sweep}: every point failed (first: {reason}); see "
                         f"{out / 'results.csv'}")
    print(front_table(table, spec.objectives,
                      [*spec.columns, *[o for o in spec.objectives if o in table]]))
    return 0
