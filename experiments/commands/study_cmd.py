"""``tessera study NAME``: one of the bundled studies, swept and reported in one command."""

from __future__ import annotations

import argparse
from pathlib import Path

STUDIES = Path(__file__).resolve().parents[1] / "studies"


def register(sub: argparse._SubParsersAction) -> None:
    names = ", ".join(sorted(p.stem for p in STUDIES.glob("*.yaml")))
    p = sub.add_parser("study", help="run a bundled study and write its report",
                       description=f"Run experiments/studies/NAME.yaml as a sweep into "
                                   f"results/NAME and write results/NAME/report. Studies: "
                                   f"{names}.")
    p.add_argument("name", nargs="?", default="quickstart", help="study (default quickstart)")
    p.add_argument("--workers", type=int, default=2, help="local worker processes")
    p.add_argument("--out", type=Path, help="results folder (default results/NAME)")
    p.add_argument("--resume", action="store_true", help="keep finished points")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from experiments.report import make_report
    from experiments.sweep.runner import front_table, run_sweep
    from experiments.sweep.spec import SweepError, load_sweep

    path = STUDIES / f"{args.name}.yaml"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in STUDIES.glob("*.yaml")))
        raise SweepError(f"unknown study '{args.name}' (studies: {known})")
    spec = load_sweep(path)
    out = args.out or Path("results") / spec.name
    table = run_sweep(spec, out, args.workers, None, args.resume, progress=True)
    ok = table[table["status"] == "ok"] if len(table) else table
    print(f"{spec.name}: {len(table)} points, {len(ok)} ok -> {out / 'results.csv'}")
    if len(ok):
        cols = [*spec.columns, "latency_s", "energy_j", "tokens_per_s"]
        print(front_table(table, spec.objectives, cols))
        figs = make_report(out, out / "report")
        print(f"report: {out / 'report' / 'index.html'} ({len(figs)} figures)")
    return 0
