"""A serving run in words (the summary ``tessera serve`` prints)."""

from __future__ import annotations

import math


def _ms(x: float) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x * 1e3:.1f} ms"


def summary_text(s: dict, spec) -> str:  # noqa: ANN001
    lines = [
        f"{s['model']} on {s['hardware']}: {s['requests']} requests served "
        f"({s['rejected']} rejected) in {s['duration_s']:.1f} s simulated, "
        f"{s['iterations']} iterations ({spec.sched.policy}, budget "
        f"{spec.sched.token_budget} tokens, {s['kv_blocks']} KV blocks of "
        f"{s['block_tokens']} tokens per replica)",
        f"  throughput   {s['throughput_tok_s']:.1f} output tok/s, "
        f"{s['prompt_tok_s']:.1f} prompt tok/s, {s['throughput_req_s']:.3f} req/s",
        f"  TTFT         p50 {_ms(s['ttft_p50_s'])}  p90 {_ms(s['ttft_p90_s'])}  "
        f"p99 {_ms(s['ttft_p99_s'])}",
        f"  TBT          p50 {_ms(s['tbt_p50_s'])}  p90 {_ms(s['tbt_p90_s'])}  "
        f"p99 {_ms(s['tbt_p99_s'])}",
        f"  end to end   p50 {_ms(s['e2e_p50_s'])}  p90 {_ms(s['e2e_p90_s'])}  "
        f"p99 {_ms(s['e2e_p99_s'])}",
        f"  batch        mean {s['mean_batch']:.1f}, max {s['max_batch']}; KV peak "
        f"{s['kv_peak']:.0%}; preemptions {s['preemptions']} (swaps {s['swaps']}); "
        f"prefix hits {s['prefix_hit_rate']:.0%}",
    ]
    if s["transfers"]:
        lines.append(f"  KV transfers {s['transfers']} ({s['transfer_bytes'] / 1e9:.2f} GB)")
    slo = []
    if not math.isinf(spec.slo_ttft):
        slo.append(f"TTFT <= {spec.slo_ttft:g} s")
    if not math.isinf(spec.slo_tbt):
        slo.append(f"TPOT <= {spec.slo_tbt * 1e3:g} ms")
    if slo:
        lines.append(f"  goodput      {s['goodput_req_s']:.3f} req/s ({s['slo_attained']:.0%} "
                     f"of requests within {' and '.join(slo)})")
    lines.append(f"  energy       {s['energy_per_token_j']:.3f} J per output token; "
                 f"cost {s['usd_per_mtok']:.4f} USD per million output tokens "
                 f"({s['chips']} chip(s), busy {s['utilization']:.0%})")
    return "\n".join(lines)
