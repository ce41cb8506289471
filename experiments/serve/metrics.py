"""What a serving run delivered: latency percentiles, throughput, goodput under SLOs,
energy and cost per token, from the simulated outcome.

* TTFT: first output token's time less the arrival (queueing + prefill).
* TBT: gaps between a request's successive output tokens (all gaps of all requests);
  a request's TPOT is its mean gap.
* goodput: requests per second that met both SLOs (TTFT <= ``slo_ttft`` and TPOT <=
  ``slo_tbt``, as DistServe counts them).
* cost per million output tokens: the replicas' chips amortised over ``lifetime_years``
  (chip price from ``experiments.area`` unless given) for the run's wall time, plus the
  energy at ``usd_per_kwh``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from experiments.serve.engine import Outcome

YEAR_S = 365.25 * 24 * 3600


@dataclass(frozen=True)
class Prices:
    chip_usd: float  # one chip
    lifetime_years: float = 4.0  # straight-line depreciation of an accelerator server
    usd_per_kwh: float = 0.10  # electricity, typical US commercial rate


def requests_frame(out: Outcome) -> pd.DataFrame:
    rows = []
    for s in out.seqs:
        r = s.req
        gaps = np.diff(s.times) if len(s.times) > 1 else np.array([])
        rows.append({
            "id": r.id, "arrival_s": r.arrival, "prompt_tokens": r.prompt,
            "output_tokens": r.output, "generated": s.generated,
            "ttft_s": s.times[0] - r.arrival if s.times else np.nan,
            "tpot_s": float(gaps.mean()) if len(gaps) else np.nan,
            "max_tbt_s": float(gaps.max()) if len(gaps) else np.nan,
            "e2e_s": s.times[-1] - r.arrival if s.times else np.nan,
            "finish_s": s.times[-1] if s.times else np.nan,
            "replica": s.replica, "decode_replica": s.decode_replica,
            "cached_tokens": s.cached, "preemptions": s.preemptions, "swaps": s.swaps,
            "transfer_s": s.transfer_s, "prefix": r.prefix})
    return pd.DataFrame(rows)


def iterations_frame(out: Outcome) -> pd.DataFrame:
    return pd.DataFrame([vars(i) for i in out.iterations])


def _pct(x: np.ndarray, q: float) -> float:
    return float(np.percentile(x, q)) if len(x) else float("nan")


def summarize(out: Outcome, prices: Prices, slo_ttft: float = float("inf"),
              slo_tbt: float = float("inf")) -> dict:
    df = requests_frame(out)
    gaps = np.concatenate([np.diff(s.times) for s in out.seqs if len(s.times) > 1] or
                          [np.array([])])
    start = min((s.req.arrival for s in out.seqs), default=0.0)
    span = max(out.end - start, 1e-12)
    produced = int(df["generated"].sum()) if len(df) else 0
    prompt = int(df["prompt_tokens"].sum()) if len(df) else 0
    ttft, e2e = df["ttft_s"].to_numpy(float), df["e2e_s"].to_numpy(float)
    tpot = df["tpot_s"].fillna(0.0).to_numpy(float)
    good = int(((ttft <= slo_ttft) & (tpot <= slo_tbt)).sum()) if len(df) else 0
    chips = out.replicas * out.chips_per_replica
    capex = chips * prices.chip_usd * span / (prices.lifetime_years * YEAR_S)
    energy_usd = out.energy_j / 3.6e6 * prices.usd_per_kwh
    its = out.iterations
    busy = sum(i.time_s for i in its)
    kv = out.kv
    asked = sum(k.asked_tokens for k in kv)
    return {
        "requests": len(out.seqs), "rejected": len(out.rejected),
        "duration_s": span, "iterations": len(its),
        "throughput_tok_s": produced / span, "prompt_tok_s": prompt / span,
        "throughput_req_s": len(out.seqs) / span,
        "arrival_rate_req_s": _arrival_rate(out),
        "ttft_p50_s": _pct(ttft, 50), "ttft_p90_s": _pct(ttft, 90), "ttft_p99_s": _pct(ttft, 99),
        "tbt_p50_s": _pct(gaps, 50), "tbt_p90_s": _pct(gaps, 90), "tbt_p99_s": _pct(gaps, 99),
        "e2e_p50_s": _pct(e2e, 50), "e2e_p90_s": _pct(e2e, 90), "e2e_p99_s": _pct(e2e, 99),
        "goodput_req_s": good / span, "slo_attained": good / len(df) if len(df) else 0.0,
        "mean_batch": float(np.mean([i.sequences for i in its])) if its else 0.0,
        "max_batch": max((i.sequences for i in its), default=0),
        "kv_peak": max((i.kv_used for i in its), default=0.0),
        "preemptions": int(df["preemptions"].sum()) if len(df) else 0,
        "swaps": int(df["swaps"].sum()) if len(df) else 0,
        "prefix_hit_rate": sum(k.hit_tokens for k in kv) / asked if asked else 0.0,
        "transfers": out.transfers, "transfer_bytes": out.transfer_bytes,
        "utilization": busy / (span * out.replicas),
        "energy_j": out.energy_j,
        "energy_per_token_j": out.energy_j / produced if produced else float("nan"),
        "usd_per_mtok": (capex + energy_usd) / produced * 1e6 if produced else float("nan"),
        "chips": chips,
    }


def _arrival_rate(out: Outcome) -> float:
    """Requests per second as they arrived: (n - 1) over the first to the last arrival."""
    t = sorted(s.req.arrival for s in out.seqs)
    return (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 and t[-1] > t[0] else float("inf")


def mean_in_system(out: Outcome) -> float:
    """Time-average of the requests in the system over the run (from the event record)."""
    pts = out.in_system
    if not pts:
        return 0.0
    start = pts[0][0]
    area = sum(n * (t1 - t0) for (t0, n), (t1, _) in zip(pts, pts[1:]))
    return area / max(out.end - start, 1e-12)
