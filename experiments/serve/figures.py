"""Figures of a serving run (``tessera report results/serve``): latency CDFs, KV usage and
batch size over time, throughput and p99 latency against rate (after ``--find-capacity``),
and a Chrome trace of the iterations of every replica."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def _cdf(ax, x: np.ndarray, label: str) -> None:  # noqa: ANN001
    """An empirical CDF in ms; a log axis only when the values span more than 20x."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    x = np.sort(x[np.isfinite(x)])
    if len(x):
        ax.plot(x * 1e3, np.arange(1, len(x) + 1) / len(x), label=label)
        if x[0] > 0 and x[-1] / x[0] > 20:
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())


def serve_figures(folder: Path, out: Path, save) -> tuple[list[Path], list[tuple[str, str]]]:  # noqa: ANN001
    figs, tables = [], []
    if (folder / "serve.json").exists():
        doc = json.loads((folder / "serve.json").read_text())
        req = pd.read_csv(folder / "requests.csv")
        its = pd.read_csv(folder / "iterations.csv")
        fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
        for ax, col, name in zip(axes, ("ttft_s", "tpot_s", "e2e_s"),
                                 ("time to first token", "time per output token (mean gap)",
                                  "end-to-end latency")):
            _cdf(ax, req[col].to_numpy(float), name)
            ax.set_xlabel(f"{name} (ms)")
            ax.set_ylabel("fraction of requests")
            ax.grid(alpha=0.3)
        fig.suptitle(f"{doc['model']} on {doc['hardware']}: latency CDFs "
                     f"({doc['requests']} requests)", fontsize=10)
        figs.append(save(fig, out / "latency_cdf"))
        if len(its):
            fig, ax = plt.subplots(figsize=(9, 3.4))
            for rep, part in its.groupby("replica"):
                ax.step(part["start"], part["kv_used"] * 100, where="post",
                        label=f"replica {rep} KV used", lw=0.8)
            ax.set_xlabel("time (s)")
            ax.set_ylabel("KV cache used (%)")
            ax2 = ax.twinx()
            for rep, part in its.groupby("replica"):
                ax2.plot(part["start"], part["sequences"], ".", ms=1.5, alpha=0.4,
                         label=f"replica {rep} batch")
            ax2.set_ylabel("sequences per iteration")
            ax.legend(loc="upper left", fontsize=7)
            ax.set_title("KV cache usage and batch size over time", fontsize=10)
            figs.append(save(fig, out / "kv_and_batch"))
            _chrome(its, out / "iterations.trace.json")
        keys = ("model", "hardware", "scheduler", "requests", "rejected", "throughput_tok_s",
                "ttft_p50_s", "ttft_p99_s", "tbt_p50_s", "tbt_p99_s", "goodput_req_s",
                "mean_batch", "kv_peak", "preemptions", "prefix_hit_rate",
                "energy_per_token_j", "usd_per_mtok")
        tables.append(("Summary", pd.DataFrame([{k: doc.get(k) for k in keys}])
                        .T.rename(columns={0: "value"}).to_html()))
    if (folder / "capacity.csv").exists():
        cap = pd.read_csv(folder / "capacity.csv").sort_values("rate")
        fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.4))
        a.plot(cap["rate"], cap["throughput_tok_s"], "o-")
        a.set_xlabel("arrival rate (requests/s)")
        a.set_ylabel("output tokens/s")
        a.set_title("Throughput against rate", fontsize=10)
        b.plot(cap["rate"], cap["ttft_p99_s"] * 1e3, "o-", label="TTFT p99")
        b.plot(cap["rate"], cap["tbt_p99_s"] * 1e3, "s-", label="TBT p99")
        b.set_yscale("log")
        b.set_xlabel("arrival rate (requests/s)")
        b.set_ylabel("latency (ms)")
        b.legend(fontsize=8)
        b.set_title("p99 latency against rate", fontsize=10)
        for ax in (a, b):
            ax.grid(alpha=0.3)
        figs.append(save(fig, out / "rate_sweep"))
        tables.append(("Capacity probes", cap[["rate", "meets", "throughput_tok_s",
                                               "ttft_p99_s", "tbt_p99_s"]].to_html(
            index=False)))
    return figs, tables


def _chrome(its: pd.DataFrame, path: Path, limit: int = 200_000) -> None:
    """Iterations as Chrome trace events: one row (thread) per replica."""
    events = [{"name": f"{int(r.prefill_tokens)} prompt tok + {int(r.decode_seqs)} decodes",
               "ph": "X", "pid": 0, "tid": int(r.replica), "ts": r.start * 1e6,
               "dur": r.time_s * 1e6, "args": {"sequences": int(r.sequences),
                                               "kv_used": float(r.kv_used)}}
              for r in its.head(limit).itertuples()]
    path.write_text(json.dumps({"traceEvents": events}))
