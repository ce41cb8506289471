"""``tessera validate``: predict measured GPU rows on a preset and report the error."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "validate", help="predict measured rows on a preset and report the error",
        description="Recognise MEASURED.csv's kind by its columns (gemm, gemm_lowp, memory, "
                    "vector, attention, layers, tp_layers, collectives, power), predict every "
                    "row by mapping and simulating it on PRESET (h100, h200, h200x2, h200x4), "
                    "and print the error summary. Rows the model cannot express are listed "
                    "as skipped with the reason. See docs/validation.md.")
    p.add_argument("preset", help="chip or system preset (or a chip/system YAML)")
    p.add_argument("measured", type=Path, help="a measured CSV file")
    p.add_argument("--out", type=Path, help="write per-row predictions and errors here (CSV)")
    p.add_argument("--plot", type=Path, help="predicted vs measured, log-log (PNG or SVG)")
    p.add_argument("--json", action="store_true",
                   help="print the summary as one JSON object on the last line")
    p.add_argument("--max-instructions", type=int, default=20_000_000, metavar="N",
                   help="skip a row whose simulation needs more dynamic instructions "
                        "(default 20,000,000)")
    p.add_argument("--cv", metavar="COLUMN",
                   help="cross-validate: hold out each value of COLUMN in turn (a row width, "
                        "a model), refit the --fit fields on the other rows and predict it")
    p.add_argument("--fit-on", type=Path, metavar="OTHER.csv",
                   help="cross-validate across files: fit the --fit fields on OTHER.csv "
                        "(another regime: kernels), then predict MEASURED.csv (whole layers) "
                        "with them")
    p.add_argument("--fit", nargs="+", metavar="FIELD",
                   help="dotted chip fields --cv or --fit-on refits (default: those "
                        "docs/validation.md says were fitted on this kind of file)")
    p.add_argument("--rounds", type=int, default=2,
                   help="coordinate-descent rounds per step size of each fit (default 2)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from experiments.validate import ValidateError, load_target, summary, validate

    if args.max_instructions < 1:
        raise ValidateError(f"--max-instructions: must be positive, got {args.max_instructions}")
    target = dataclasses.replace(load_target(args.preset),
                                 max_instructions=args.max_instructions)
    from dataclasses import replace as copy

    from simulator.cache import current

    store = current()
    before = copy(store.stats) if store is not None else None
    if args.cv is not None and args.fit_on is not None:
        raise ValidateError("--cv and --fit-on: give one (within a file, or across two)")
    if args.cv is not None:
        return _cross_validate(args, target)
    if args.fit_on is not None:
        return _fit_elsewhere(args, target)
    if args.fit:
        raise ValidateError("--fit: only with --cv COLUMN or --fit-on FILE (the fields to "
                            "refit)")
    kind, df = validate(target, args.measured, progress=_progress())
    s = summary(kind, df)
    print(f"{args.measured.name} ({kind}) on {args.preset}: {s['cases']} cases, "
          f"{s['skipped']} skipped; MAPE {_pct(s['mape_pct'])}, median "
          f"{_pct(s['median_ape_pct'])}, max {_pct(s['max_ape_pct'])}")
    if "with_interval" in s:
        print(f"  measured inside the p10-p90 interval of {kind} predictions "
              f"(docs/validation.md): {s['inside_interval']} of {s['with_interval']} rows")
    for metric, m in s.get("metrics", {}).items():
        print(f"  {metric}: {m['cases']} cases; MAPE {_pct(m['mape_pct'])}, median "
              f"{_pct(m['median_ape_pct'])}, max {_pct(m['max_ape_pct'])}")
    for why in dict.fromkeys(df.loc[df["skipped"] != "", "skipped"]):
        print(f"  skipped {why}")
    if args.out:
        _write_csv(df, args.out)
        print(f"per-row predictions: {args.out}")
    if args.plot:
        _plot(df, kind, args.plot, args.preset)
        print(f"plot: {args.plot}")
    if store is not None:
        print(store.stats.since(before).line())
    if args.json:
        print(json.dumps({**s, "preset": args.preset, "file": args.measured.name}))
    return 0


def _cross_validate(args: argparse.Namespace, target) -> int:  # noqa: ANN001
    """Leave each regime of ``--cv COLUMN`` out, refit, predict it; print both errors."""
    from experiments.fit import cross_validate, fit, regime_name
    from experiments.validate import summary

    kind, rows, params = _refit_setup(args, args.measured, "--cv")
    log = print if not args.json else None
    _, in_sample = fit(target, kind, rows, params, args.rounds)
    folds, held = cross_validate(target, kind, rows, args.cv, params, args.rounds, log)
    s = summary(kind, held)
    print(f"{args.measured.name} ({kind}) on {args.preset}, refitting {', '.join(params)}:")
    for f in folds:
        values = ", ".join(f"{p.rsplit('.', 2)[-2] + '.' + p.rsplit('.', 1)[-1]}={v:.4g}"
                           for p, v in f.fitted.items())
        print(f"  held out {regime_name(args.cv, f.held)} ({f.rows} rows): MAPE "
              f"{_pct(f.held_mape)} (fitted on the rest: {_pct(f.train_mape)}; {values})")
    print(f"cross-validated MAPE {_pct(s['mape_pct'])} over {s['cases']} rows "
          f"({s['skipped']} skipped); in-sample, fitted on every row: {_pct(in_sample)}")
    return _held_out(args, held, {**s, "cv_column": args.cv, "in_sample_mape_pct": in_sample,
                                  "params": params,
                                  "folds": [{"held": f.held, "rows": f.rows,
                                             "fitted": f.fitted, "train_mape_pct": f.train_mape,
                                             "held_mape_pct": f.held_mape} for f in folds]})


def _refit_setup(args: argparse.Namespace, fitted_on: Path, flag: str) -> tuple:
    """(kind, rows, fields to refit) of the file the fit reads, the rounds checked."""
    from experiments.fit import DEFAULT_FIT
    from experiments.validate import ValidateError, read_measured

    if args.rounds < 1:
        raise ValidateError(f"--rounds: must be positive, got {args.rounds}")
    kind, rows = read_measured(fitted_on)
    params = list(args.fit or DEFAULT_FIT.get(kind, ()))
    if not params:
        raise ValidateError(f"{flag} on a {kind} file: name the fields to refit with --fit "
                            f"(defaults exist for {', '.join(DEFAULT_FIT)})")
    return kind, rows, params


def _fit_elsewhere(args: argparse.Namespace, target) -> int:  # noqa: ANN001
    """Fit on ``--fit-on``'s rows, predict the measured file's with what was fitted."""
    from experiments.fit import fit, with_fields
    from experiments.validate import read_measured, summary, validate_rows

    other_kind, other, params = _refit_setup(args, args.fit_on, "--fit-on")
    kind, rows = read_measured(args.measured)
    fitted, train = fit(target, other_kind, other, params, args.rounds,
                        print if not args.json else None)
    in_sample = summary(kind, validate_rows(target, kind, rows))["mape_pct"]
    held = validate_rows(with_fields(target, fitted), kind, rows)
    s = summary(kind, held)
    values = ", ".join(f"{p}={v:.4g}" for p, v in fitted.items())
    print(f"fitted on {args.fit_on.name} ({other_kind}, {len(other)} rows): MAPE "
          f"{_pct(train)}; {values}")
    print(f"{args.measured.name} ({kind}) on {args.preset} with them: cross-validated MAPE "
          f"{_pct(s['mape_pct'])} over {s['cases']} rows ({s['skipped']} skipped); with the "
          f"preset's values: {_pct(in_sample)}")
    return _held_out(args, held, {**s, "fit_on": args.fit_on.name,
                                  "in_sample_mape_pct": in_sample, "params": params,
                                  "fitted": fitted, "fit_on_mape_pct": train})


def _held_out(args: argparse.Namespace, held, summary: dict) -> int:  # noqa: ANN001
    """Write the held-out predictions (``--out``) and the summary (``--json``)."""
    if args.out:
        _write_csv(held, args.out)
        print(f"held-out predictions: {args.out}")
    if args.json:
        print(json.dumps({**summary, "preset": args.preset, "file": args.measured.name}))
    return 0


def _pct(x: float) -> str:
    return f"{x:.1f}%" if math.isfinite(x) else "n/a"


def _progress():  # noqa: ANN202
    """A tqdm bar on an interactive terminal (stderr), nothing otherwise."""
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    bar = None

    def update(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, unit="row", file=sys.stderr, leave=False)
        bar.update(done - bar.n)
        if done == total:
            bar.close()
    return update


def _write_csv(df, path: Path) -> None:  # noqa: ANN001
    from experiments.validate import ValidateError

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        df.to_csv(tmp, index=False)
        tmp.replace(path)
    except OSError as exc:
        raise ValidateError(f"{path}: cannot write ({exc.strerror})") from None


def _plot(df, kind: str, path: Path, preset: str) -> None:  # noqa: ANN001
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from experiments.validate import ValidateError

    ok = df[df["skipped"] == ""]
    unit = "W" if kind == "power" else "ms"
    fig, ax = plt.subplots(figsize=(5, 5))
    if len(ok):
        ax.loglog(ok["measured"], ok["predicted"], "o", alpha=0.7, label="rows")
        lo = min(ok["measured"].min(), ok["predicted"].min()) / 1.5
        hi = max(ok["measured"].max(), ok["predicted"].max()) * 1.5
        ax.loglog([lo, hi], [lo, hi], "k--", lw=1, label="y = x")
        for f in (0.9, 1.1):
            ax.loglog([lo, hi], [lo * f, hi * f], ":", color="grey", lw=0.8)
        mape = ok["ape_pct"].mean()
        ax.set_title(f"{kind} on {preset}: MAPE {mape:.1f}% ({len(ok)} rows)")
    else:
        ax.set_title(f"{kind} on {preset}: no row predicted")
    ax.set_xlabel(f"measured ({unit})")
    ax.set_ylabel(f"predicted ({unit})")
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3, which="both")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120, bbox_inches="tight")
    except (OSError, ValueError) as exc:
        raise ValidateError(f"{path}: cannot write the plot ({exc})") from None
    finally:
        plt.close(fig)
