"""Figures of a training step (``tessera report results/train``): the step's time
breakdown, the memory per chip by part, and the pipeline timeline of every device."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

TIME = ("compute_s", "bubble_s", "exposed_comm_s", "optimizer_s")
MEMORY = ("memory_weights_bytes", "memory_gradients_bytes", "memory_optimizer_bytes",
          "memory_activations_bytes", "memory_logits_bytes", "memory_workspace_bytes")


def timeline_rows(report, limit: int = 20000) -> list[list]:  # noqa: ANN001
    """[device, F|B, chunk, micro-batch, start s, end s] of the simulated schedule."""
    rows = []
    for dev, ops in enumerate(report.timeline.ops if report.timeline else ()):
        for op, start, end in ops:
            rows.append([dev, op.kind, op.chunk, op.mb, start, end])
    return rows[:limit]


def train_figures(doc: dict, out: Path, save) -> tuple[list[Path], list[tuple[str, str]]]:  # noqa: ANN001
    figs = []
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    ax.barh([k[:-2].replace("_", " ") for k in TIME], [doc[k] * 1e3 for k in TIME],
            color=["C0", "C1", "C3", "C2"])
    ax.set_xlabel("time per step (ms)")
    ax.set_title(f"Step {doc['step_s'] * 1e3:.1f} ms: where the time goes")
    figs.append(save(fig, out / "step_time"))
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    names = [k[len("memory_"):-len("_bytes")] for k in MEMORY]
    ax.barh(names, [doc[k] / 1e9 for k in MEMORY], color="C4")
    ax.set_xlabel("memory per chip (GB)")
    ax.set_title(f"Peak memory per chip {doc['peak_memory_bytes'] / 1e9:.1f} GB")
    figs.append(save(fig, out / "memory"))
    rows = doc.get("timeline") or []
    if rows:
        devices = max(r[0] for r in rows) + 1
        fig, ax = plt.subplots(figsize=(9, 0.4 * devices + 1.5))
        for dev, kind, chunk, _mb, start, end in rows:
            color = ("C0" if kind == "F" else "C1") if chunk % 2 == 0 else \
                ("C9" if kind == "F" else "C3")
            ax.broken_barh([(start * 1e3, (end - start) * 1e3)], (dev - 0.4, 0.8),
                           color=color, edgecolor="white", linewidth=0.3)
        ax.set_yticks(range(devices), [f"stage {d}" for d in range(devices)])
        ax.invert_yaxis()
        ax.set_xlabel("time (ms)")
        ax.set_title("Pipeline schedule: forward (blue) and backward (orange) of each "
                     "micro-batch", fontsize=9)
        figs.append(save(fig, out / "pipeline"))
    keys = ("model", "target", "step_s", "tokens_per_s", "mfu", "peak_memory_bytes",
            "energy_j", "tp", "pp", "dp", "zero", "micro_batch", "global_batch", "seq",
            "recompute", "schedule", "virtual_stages", "recipe")
    table = pd.DataFrame([{k: doc.get(k) for k in keys}]).to_html(index=False)
    return figs, [("Training step", table)]
