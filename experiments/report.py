"""Reports: matplotlib figures (PNG and SVG) and one self-contained HTML page.

From a sweep's results: Pareto fronts (latency vs energy, vs area and cost), per-engine
utilization and the energy breakdown of each point. From a single run (``tessera run``'s
folder): the roofline of each kernel against the chip, the energy breakdown, and — when
the run was traced — a timeline of engines and links. Every axis has its unit.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from isa.errors import TesseraError  # noqa: E402


class ReportError(TesseraError):
    """A results folder the report cannot read (named in the message)."""


def make_report(results: Path, out: Path) -> list[Path]:
    """Write the figures and ``index.html`` for a sweep or run folder; the figure files."""
    out.mkdir(parents=True, exist_ok=True)
    if (results / "results.csv").exists() or results.suffix == ".csv":
        csv = results if results.suffix == ".csv" else results / "results.csv"
        figs, tables = _sweep(pd.read_csv(csv), out)
        about = csv.parent / "sweep.json"
        if about.exists():
            tables.insert(0, ("What was run", _about(json.loads(about.read_text()))))
        title = f"Sweep {csv.parent.name}"
    elif (results / "train.json").exists():
        from experiments.train.report import train_figures

        doc = json.loads((results / "train.json").read_text())
        figs, tables = train_figures(doc, out, _save)
        title = f"{doc['model']} training step on {doc['target']}"
    elif (results / "serve.json").exists() or (results / "capacity.csv").exists():
        from experiments.serve.figures import serve_figures

        figs, tables = serve_figures(results, out, _save)
        doc = json.loads((results / "serve.json").read_text()) if (
            results / "serve.json").exists() else json.loads(
            (results / "capacity.json").read_text())
        title = f"Serving {doc['model']} on {doc['hardware']}"
    elif (results / "result.json").exists():
        doc = json.loads((results / "result.json").read_text())
        figs, tables = _run(doc, results, out)
        opts = doc.get("options", {})
        tables.insert(0, ("What was run", _about({
            "model": doc["model"], "chip": doc["chip"], "mode": doc["mode"],
            **{k: opts[k] for k in ("batch", "seq", "ctx", "tokens", "quant", "tp", "pp", "dp")
               if k in opts}, "versions": doc.get("versions", {})})))
        title = f"{doc['model']} on {doc['chip']}: {doc['mode']}"
    else:
        raise ReportError(f"{results}: neither a sweep folder (results.csv), a run folder "
                          f"(result.json), a training folder (train.json) nor a serving folder "
                          f"(serve.json)")
    _html(out / "index.html", title, figs, tables)
    return figs


# ---- sweeps ---------------------------------------------------------------------------------

def _about(info: dict) -> str:
    """A two-column table of what was run (nested values as key=value lists)."""
    def show(v: object) -> str:
        if isinstance(v, dict):
            return ", ".join(f"{k}={'none' if x is None else x}" for k, x in v.items())
        if isinstance(v, list):
            return ", ".join(map(str, v))
        return "none" if v is None else str(v)
    return pd.DataFrame([(k, show(v)) for k, v in info.items()],
                        columns=["", "value"]).to_html(index=False)


def _sweep(df: pd.DataFrame, out: Path) -> tuple[list[Path], list[tuple[str, str]]]:
    from experiments.sweep.runner import scenarios

    params = [c for c in df.columns if "." in c or c in ("batch", "seq", "ctx", "phase")]
    df = df.copy()
    for c in params:  # an option left unset (null: bf16, no sparsity, ...) reads "none"
        if df[c].isna().any():
            df[c] = df[c].astype(object).where(df[c].notna(), "none")
    if "error" in df:
        df["error"] = df["error"].astype(object).fillna("")
    ok = df[df["status"] == "ok"] if "status" in df else df
    if ok.empty:
        raise ReportError("the sweep has no successful point to plot")
    if "capacity_req_s" in ok or "throughput_tok_s" in ok:
        return _serve_sweep(ok, df, params, out)
    by = scenarios(ok)
    design = [c for c in params if c not in by]
    figs = []
    for key, group in (ok.groupby(by, sort=False) if by else [((), ok)]):
        key = key if isinstance(key, tuple) else (key,)
        tag = "_".join(f"{c}-{v}" for c, v in zip(by, key))
        where = ", ".join(f"{c}={v}" for c, v in zip(by, key))
        for x, xl in (("energy_j", "energy per run (J)"), ("area_mm2", "area (mm²)"),
                      ("cost_usd", "cost per system (USD)")):
            if x in group:
                figs.append(_pareto(group, x, xl, out, design, tag, where))
    figs.append(_bars(ok, params, [c for c in ok.columns if c.startswith("util_")],
                      "utilization (fraction of time busy)", "Per-engine utilization",
                      out / "utilization", stacked=False))
    figs.append(_bars(ok, params, [c for c in ok.columns if c.startswith("energy_")
                                   and c.endswith("_j") and c != "energy_j"],
                      "energy (J)", "Energy breakdown", out / "energy", stacked=True))
    from experiments.sweep.runner import pareto

    front = pareto(ok, ["latency_s", "energy_j"], by)
    cols = [c for c in (*params, "latency_s", "energy_j", "tokens_per_s", "area_mm2",
                        "cost_usd") if c in df]
    per = f"; one front per {', '.join(by)}" if by else ""
    tables = [(f"Pareto front (latency, energy{per})", front[cols].to_html(index=False)),
              ("All points", df[[c for c in (*cols, "status", "error") if c in df]]
               .to_html(index=False))]
    return figs, tables


def _serve_sweep(ok: pd.DataFrame, df: pd.DataFrame, params: list[str], out: Path
                 ) -> tuple[list[Path], list[tuple[str, str]]]:
    """A sweep of serving runs (``phase: serve``): what each design serves, per dollar, and
    its tail latencies."""
    params = [p for p in params if p != "phase" and ok[p].nunique() > 1] or params
    figs = []
    if "capacity_req_s" in ok:
        figs.append(_bars(ok, params, ["capacity_req_s"], "requests/s within the SLOs",
                          "Capacity at the SLOs", out / "capacity", stacked=False))
    figs.append(_bars(ok, params, ["tokens_per_usd"], "output tokens per USD",
                      "Tokens per dollar", out / "tokens_per_usd", stacked=False))
    figs.append(_bars(ok, params, ["ttft_p99_s", "tbt_p99_s"], "seconds",
                      "p99 TTFT and TBT", out / "tail_latency", stacked=False))
    cols = [c for c in (*params, "capacity_req_s", "throughput_tok_s", "tokens_per_usd",
                        "usd_per_mtok", "ttft_p99_s", "tbt_p99_s", "kv_peak",
                        "energy_per_token_j") if c in df]
    best = ok.sort_values("tokens_per_usd", ascending=False)[cols]
    return figs, [("Points by tokens per dollar", best.to_html(index=False)),
                  ("All points", df[[c for c in (*cols, "status", "error") if c in df]]
                   .to_html(index=False))]


def _label(row: pd.Series, params: list[str]) -> str:
    return ", ".join(f"{p.split('.')[-1]}={row[p]}" for p in params if p in row)


def _pareto(ok: pd.DataFrame, x: str, xlabel: str, out: Path, design: list[str],
            tag: str = "", where: str = "") -> Path:
    """Latency against ``x`` for one scenario, the front's points labelled by design."""
    from experiments.sweep.runner import pareto

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    ax.scatter(ok[x], ok["latency_s"] * 1e3, s=18, color="0.6", label="points")
    front = pareto(ok, ["latency_s", x], []).sort_values(x)
    ax.plot(front[x], front["latency_s"] * 1e3, "o-", color="C3", label="Pareto front")
    for _, row in front.iterrows():
        ax.annotate(_label(row, design), (row[x], row["latency_s"] * 1e3), fontsize=6,
                    xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("latency (ms)")
    ax.set_title(f"Latency vs {xlabel.split(' (')[0]}" + (f" ({where})" if where else ""))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, out / (f"pareto_{x}_{tag}" if tag else f"pareto_{x}"))


def _bars(ok: pd.DataFrame, params: list[str], cols: list[str], ylabel: str, title: str,
          path: Path, stacked: bool) -> Path:
    rows = ok.head(24)
    labels = [_label(r, params) or str(i) for i, (_, r) in enumerate(rows.iterrows())]
    fig, ax = plt.subplots(figsize=(max(6.4, 0.5 * len(rows) + 2), 4.4))
    bottom = [0.0] * len(rows)
    width = 0.8 / (1 if stacked else max(1, len(cols)))
    for i, c in enumerate(cols):
        vals = rows[c].fillna(0).tolist()
        xs = [j + (0 if stacked else (i - (len(cols) - 1) / 2) * width) for j in range(len(rows))]
        ax.bar(xs, vals, width, bottom=bottom if stacked else None,
               label=c.replace("util_", "").replace("energy_", "").replace("_j", ""))
        if stacked:
            bottom = [b + v for b, v in zip(bottom, vals)]
    ax.set_xticks(range(len(rows)), labels, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # clear of the bars
    fig.tight_layout()
    return _save(fig, path)


# ---- single runs ----------------------------------------------------------------------------

def _run(doc: dict, folder: Path, out: Path) -> tuple[list[Path], list[tuple[str, str]]]:
    figs = []
    kernels = [k for ph in doc["phases"] for k in ph.get("kernels", [])]
    if kernels:
        figs.append(_roofline(kernels, doc["peak_flops"], doc["hbm_bandwidth"], out))
    energy = doc["phases"][0]["layer_result"]["energy_j"]
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    ax.bar(list(energy), [v * 1e3 for v in energy.values()], color="C0")
    ax.set_ylabel("energy per layer (mJ)")
    ax.set_title("Energy breakdown of one layer")
    figs.append(_save(fig, out / "energy"))
    trace = folder / "trace.json"
    if trace.exists():
        figs.append(_gantt(json.loads(trace.read_text()), out))
    phases = pd.DataFrame([{k: v for k, v in ph.items() if not isinstance(v, (dict, list))}
                           for ph in doc["phases"]])
    tables = [("Headline", pd.DataFrame([doc["headline"]]).to_html(index=False)),
              ("Phases", phases.to_html(index=False))]
    if kernels:
        tables.append(("Kernels of the first phase", pd.DataFrame(
            doc["phases"][0].get("kernels", [])).to_html(index=False)))
    return figs, tables


def _roofline(kernels: list[dict], peak: float, bw: float, out: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    xs = [k["flops"] / max(k["hbm_bytes"], 1) for k in kernels if k["flops"]]
    lo, hi = min(xs + [0.1]) / 2, max(xs + [peak / bw]) * 4
    grid = [lo * (hi / lo) ** (i / 99) for i in range(100)]
    ax.loglog(grid, [min(peak, bw * x) for x in grid], "k-", label="roof: min(peak, BW × I)")
    for kind in sorted({k["kind"] for k in kernels}):
        pts = [(k["flops"] / max(k["hbm_bytes"], 1), k["flops"] / k["time_s"])
               for k in kernels if k["kind"] == kind and k["flops"] and k["time_s"]]
        if pts:
            ax.loglog(*zip(*pts), "o", label=kind, alpha=0.8)
    ax.set_xlabel("operational intensity (FLOP / HBM byte)")
    ax.set_ylabel("achieved (FLOP/s)")
    ax.set_title("Roofline of each kernel against the chip")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    return _save(fig, out / "roofline")


def _gantt(trace: dict, out: Path) -> Path:
    events = [e for e in trace["traceEvents"] if e.get("ph") == "X"]
    names = {(e["pid"], e["tid"]): e["args"]["name"] for e in trace["traceEvents"]
             if e.get("name") == "thread_name"}
    procs = {e["pid"]: e["args"]["name"] for e in trace["traceEvents"]
             if e.get("name") == "process_name"}
    tracks = sorted({(e["pid"], e["tid"]) for e in events})[:48]
    fig, ax = plt.subplots(figsize=(9, 0.28 * len(tracks) + 1.5))
    for i, key in enumerate(tracks):
        spans = [(e["ts"], e["dur"]) for e in events if (e["pid"], e["tid"]) == key]
        ax.broken_barh(spans, (i - 0.4, 0.8), color=f"C{i % 10}")
    ax.set_yticks(range(len(tracks)), [f"{procs.get(p, p)} {names.get((p, t), t)}"
                                       for p, t in tracks], fontsize=6)
    ax.set_xlabel("time (µs)")
    ax.set_title("Timeline of engines and links")
    ax.invert_yaxis()
    fig.tight_layout()
    return _save(fig, out / "timeline")


# ---- output ---------------------------------------------------------------------------------

def _save(fig, stem: Path) -> Path:  # noqa: ANN001
    fig.savefig(stem.with_suffix(".png"), dpi=120, bbox_inches="tight")
    fig.savefig(stem.with_suffix(".svg"), bbox_inches="tight")
    plt.close(fig)
    return stem.with_suffix(".png")


def _html(path: Path, title: str, figs: list[Path], tables: list[tuple[str, str]]) -> None:
    imgs = "\n".join(
        f'<figure><img alt="{html.escape(f.stem)}" src="data:image/png;base64,'
        f'{base64.b64encode(f.read_bytes()).decode()}"><figcaption>{html.escape(f.stem)}'
        f"</figcaption></figure>" for f in figs)
    body = "\n".join(f"<h2>{html.escape(t)}</h2>\n{h}" for t, h in tables)
    path.write_text(f"""<!doctype html><html><head><meta charset="utf-8">
<title>{html.escape(title)}</title><style>
body {{ font-family: sans-serif; margin: 2em; }} img {{ max-width: 100%; }}
table {{ border-collapse: collapse; font-size: 12px; }} td, th {{ border: 1px solid #ccc;
padding: 2px 6px; }} figure {{ display: inline-block; margin: 1em; }}</style></head>
<body><h1>{html.escape(title)}</h1>
<script>/* how many figures the browser decoded: a check a headless browser can read */
window.addEventListener("load", () => {{ const ok = [...document.images].filter(
  i => i.complete && i.naturalWidth > 0).length;
  document.body.setAttribute("data-rendered", ok + "/" + document.images.length); }});
</script>
{imgs}
{body}
</body></html>
""")
