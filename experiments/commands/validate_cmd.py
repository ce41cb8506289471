"""``tessera validate``: predict measured GPU rows on a preset and report the errors."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "validate", help="predict measured rows on a preset and report the error",
        description="Recognise MEASURED.csv's kind by its columns (gemm, gemm_lowp, memory, "
                    "vector, attention, layers, tp_layers, collectives, power), predict every "
                    "row by mapping and simulating it on PRESET (h100, h200, h200x2, h200x4), "
                    "and print the error summary. Rows the model cannot express are listed "
                    "as skipped with the reason.")
    p.add_argument("preset", help="chip or system preset (or YAML)")
    p.add_argument("measured", type=Path, help="a measured CSV file")
    p.add_argument("--out", type=Path, help="write per-row predictions and errors here (CSV)")
    p.add_argument("--plot", type=Path, help="predicted vs measured, log-log (PNG)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON last")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from experiments.validate import load_target, summary, validate

    target = load_target(args.preset)
    kind, df = validate(target, args.measured)
    s = summary(kind, df)
    print(f"{args.measured.name} ({kind}) on {args.preset}: {s['cases']} cases, "
          f"{s['skipped']} skipped; MAPE {s['mape_pct']:.1f}%, median {s['median_ape_pct']:.1f}%"
          f", max {s['max_ape_pct']:.1f}%")
    for _, r in df[df["skipped"] != ""].iterrows():
        print(f"  skipped: {r['skipped']}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(args.out, index=False)
    if args.plot:
        _plot(df, kind, args.plot)
    if args.json:
        print(json.dumps(s))
    return 0


def _plot(df, kind: str, path: Path) -> None:  # noqa: ANN001
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = df[df["skipped"] == ""]
    unit = "W" if kind == "power" else "ms"
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.loglog(ok["measured"], ok["predicted"], "o", alpha=0.7)
    lo = min(ok["measured"].min(), ok["predicted"].min()) / 1.5
    hi = max(ok["measured"].max(), ok["predicted"].max()) * 1.5
    ax.loglog([lo, hi], [lo, hi], "k--", label="y = x")
    ax.set_xlabel(f"measured ({unit})")
    ax.set_ylabel(f"predicted ({unit})")
    ax.set_title(f"{kind}: predicted vs measured")
    ax.legend()
    ax.grid(alpha=0.3, which="both")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
