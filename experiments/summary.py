"""Plain-text summaries of results, for the terminal: numbers with units, aligned."""

from __future__ import annotations

from simulator.result import SimResult


def si(value: float, unit: str) -> str:
    """``1.23 ms``, ``4.5 GB/s``: three significant digits and an SI prefix."""
    if value == 0:
        return f"0 {unit}"
    prefixes = [(1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1, ""),
                (1e-3, "m"), (1e-6, "u"), (1e-9, "n"), (1e-12, "p")]
    for scale, p in prefixes:
        if abs(value) >= scale:
            return f"{value / scale:.3g} {p}{unit}"
    return f"{value:.3g} {unit}"


def sim_summary(r: SimResult, title: str = "") -> str:
    clock = si(r.clock_hz, "Hz") + (" (power-capped from " + si(r.nominal_clock_hz, "Hz") + ")"
                                    if r.power_capped else "")
    lines = [
        f"{title or 'simulation'} on {r.chip}",
        f"  time          {si(r.time_s, 's')}  ({r.cycles:,.0f} cycles at {clock})",
        f"  instructions  {r.instructions:,} dynamic",
        f"  compute       {si(r.flops_per_s, 'FLOP/s')}  (MAC utilization "
        f"{100 * r.mac_utilization:.1f}%)",
        f"  energy        {si(r.energy_total_j, 'J')}  (average power {si(r.avg_power_w, 'W')})",
        "",
        f"  {'engine':8} {'busy':>10} {'util':>7} {'instr':>12}",
    ]
    for name, e in r.engines.items():
        lines.append(f"  {name:8} {si(e.busy_s, 's'):>10} {100 * e.utilization:6.1f}% "
                     f"{e.instructions:12,}")
    lines += ["", f"  {'energy':12} {'joules':>10} {'share':>7}"]
    total = r.energy_total_j or 1.0
    for name, j in r.energy_j.items():
        lines.append(f"  {name:12} {si(j, 'J'):>10} {100 * j / total:6.1f}%")
    lines += ["", f"  {'traffic':12} {'bytes':>10}"]
    for name, b in r.bytes.items():
        if b:
            lines.append(f"  {name:12} {si(b, 'B'):>10}")
    for race in r.races:
        lines.append(f"  RACE: {race}")
    return "\n".join(lines)


def run_summary(report) -> str:  # noqa: ANN001
    """The table ``tessera run`` prints."""
    lines = [f"{report.model} on {report.chip}: {report.mode}"]
    runs = ([report.prefill] if report.prefill else []) + report.decode
    lines.append(f"  {'phase':8} {'batch':>5} {'seq/ctx':>8} {'latency':>10} {'per layer':>10} "
                 f"{'energy':>9} {'MAC util':>8} {'clock':>9}")
    for r in runs[:12]:
        ph = r.phase
        lines.append(f"  {ph.kind:8} {ph.batch:5d} {ph.seq if ph.kind == 'prefill' else ph.ctx:8d} "
                     f"{si(r.latency_s, 's'):>10} {si(r.layer.time_s, 's'):>10} "
                     f"{si(r.energy_j, 'J'):>9} {100 * r.layer.mac_utilization:7.1f}% "
                     f"{si(r.layer.clock_hz, 'Hz'):>9}")
    if len(runs) > 12:
        lines.append(f"  ... {len(runs) - 12} more decode points")
    lines.append("")
    for k, v in report.headline().items():
        unit = {"latency_s": "s", "energy_j": "J", "ttft_s": "s", "tpot_s": "s",
                "tokens_per_s": "tok/s", "energy_per_token_j": "J"}.get(k, "")
        lines.append(f"  {k:20} {si(v, unit)}")
    mem = report.notes.get("memory_per_chip")
    if mem:
        gb = 1e9
        lines.append(f"  memory per chip      {mem['total_bytes'] / gb:.1f} GB of "
                     f"{mem['hbm_bytes'] / gb:.0f} GB: weights {mem['weights_bytes'] / gb:.1f} "
                     f"+ KV cache {mem['kv_cache_bytes'] / gb:.1f} + activations "
                     f"{mem['activations_bytes'] / gb:.2f} + workspace "
                     f"{mem['workspace_bytes'] / gb:.2f}")
    comp = report.notes.get("compression")
    if comp:
        runs0 = ([report.prefill] if report.prefill else []) + report.decode
        lines.append(f"  compression vs uncompressed ({runs0[0].phase.kind}):")
        for key, unit in (("weight_bytes", "B"), ("hbm_bytes", "B"), ("latency_s", "s"),
                          ("energy_j", "J"), ("flops", "FLOP")):
            new, old = comp[key], comp[key + "_baseline"]
            lines.append(f"    {key:14} {si(new, unit):>10} vs {si(old, unit):>10}  "
                         f"(x{new / old if old else float('nan'):.3f})")
        if "output_error" in comp:
            lines.append(f"    output error   {100 * comp['output_error']:.2f}% of the output's "
                         f"largest value")
    if report.decode_interpolated:
        lines.append(f"  (decode simulated at {len(report.decode)} context lengths, "
                     f"linear between them; --decode-samples 0 simulates every step)")
    unc = report.notes.get("uncertainty")
    if unc is not None:
        if unc.get("validated"):
            lines.append(f"  real hardware, 80% interval: latency "
                         f"{si(unc['latency_s_p10'], 's')} .. {si(unc['latency_s_p90'], 's')} "
                         f"({unc['basis']})")
        else:
            lines.append(f"  unvalidated, no error bar: {unc.get('why', 'no measurements')}")
    return "\n".join(lines)
