"""The text summary of a training step (``tessera train``)."""

from __future__ import annotations

from experiments.train.memory import size


def summary(r) -> str:  # noqa: ANN001
    s = r.spec
    split = f"TP{s.tp} x PP{s.pp} x DP{s.dp}" + (f", ZeRO-{s.zero}" if s.zero else "")
    lines = [
        f"{r.model} training step on {r.target} ({split}; micro-batch {s.micro_batch} x "
        f"{s.micro_batches} per replica, seq {s.seq}, recompute {s.recompute}, "
        f"{s.schedule if s.pp > 1 else 'no pipeline'}, {s.recipe} precision)",
        f"  step            {r.step_s * 1e3:10.2f} ms   {r.tokens_per_s:,.0f} tokens/s   "
        f"MFU {100 * r.mfu:.1f}%",
    ]
    for key, value in r.breakdown.items():
        share = 100 * value / r.step_s if r.step_s else 0.0
        lines.append(f"  {key.replace('_', ' '):15s} {value * 1e3:10.2f} ms   {share:5.1f}%")
    lines.append(f"  per micro-batch: stage forward {r.stage_fwd_s * 1e3:.2f} ms, backward "
                 f"{r.stage_bwd_s * 1e3:.2f} ms; gradient sync {r.comm_s * 1e3:.2f} ms")
    lines.append(f"  memory per chip {size(r.memory.total):>11s}: {r.memory.breakdown()}")
    per_tok = r.energy_j / r.tokens if r.tokens else 0.0
    lines.append(f"  energy          {r.energy_j:10.1f} J per step, {per_tok * 1e3:.3f} mJ per "
                 f"token")
    return "\n".join(lines)
