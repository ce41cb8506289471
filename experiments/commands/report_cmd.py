"""``tessera report``: figures and an HTML page from a sweep or run results folder."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report", help="plot a sweep's or a run's results",
        description="Write PNG and SVG figures and a self-contained index.html for RESULTS: a "
                    "sweep folder (results.csv) or a 'tessera run' folder (result.json).")
    p.add_argument("results", type=Path, help="results folder (or a sweep's results.csv)")
    p.add_argument("-o", "--out", type=Path, help="report folder (default RESULTS/report)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from experiments.report import make_report

    out = args.out or (args.results if args.results.is_dir() else args.results.parent) / "report"
    figs = make_report(args.results, out)
    print(f"report: {out / 'index.html'} ({len(figs)} figures, PNG and SVG)")
    return 0
