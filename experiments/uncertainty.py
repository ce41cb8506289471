"""How far to trust a prediction: an interval from cross-validated errors.

``benchmarks/validate_all.py --intervals`` predicts the measured rows that no parameter
was fitted on (other shapes, other models, another chip: the held regime) and keeps, per
kind of work, the 10th and 90th percentiles of measured / predicted (``INTERVALS``, in
``experiments/data/intervals.json``). A prediction of that kind on a validated preset is
then reported with the interval ``[p10 x predicted, p90 x predicted]``: where the real
hardware fell, for 80% of the rows the model never saw. Its coverage under
cross-validation (quantiles taken on one group of rows, checked on the other) is stored
beside it and printed by the benchmark.

A chip that is not a validated preset as shipped (another chip, or a preset with a field
changed) has no interval: its result says ``unvalidated``.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

INTERVALS = Path(__file__).parent / "data" / "intervals.json"
QUANTILES = (0.1, 0.9)


@cache
def table() -> dict:
    """{"presets": [...], "kinds": {kind: {"p10": r, "p90": r, "rows": n, "coverage": c}}}"""
    if not INTERVALS.exists():
        return {"presets": [], "kinds": {}}
    return json.loads(INTERVALS.read_text())


def validated(chip) -> bool:  # noqa: ANN001
    """The chip is a validated preset exactly as shipped (no field changed)."""
    return chip.name in table()["presets"] and _as_shipped(chip)


def _as_shipped(chip) -> bool:  # noqa: ANN001
    from hardware.chips import load_chip

    try:
        return load_chip(chip.name) == chip
    except Exception:  # noqa: BLE001
        return False


def rows_interval(kind: str, chip, df):  # noqa: ANN001, ANN201
    """``tessera validate``'s rows with ``p10`` and ``p90`` beside ``predicted`` (the kind's
    interval on a validated chip), or the rows as they are. A kind is the file's
    (``gemm``, ``vector``, ``memory``, ``model_infer``); rows of the held files the interval
    was built from are inside it ~80% of the time by construction, other rows are a test."""
    entry = table()["kinds"].get(kind)
    if entry is None or chip is None or not validated(chip) or "predicted" not in df:
        return df
    return df.assign(p10=df["predicted"] * entry["p10"], p90=df["predicted"] * entry["p90"])


def inside(df) -> tuple[int, int] | None:  # noqa: ANN001
    """(rows whose measured value fell inside their interval, rows with one)."""
    if "p10" not in df.columns:
        return None
    ok = df[df["predicted"].notna()]
    hit = (ok["measured"] >= ok["p10"]) & (ok["measured"] <= ok["p90"])
    return int(hit.sum()), int(len(ok))


TIMES = ("latency_s", "ttft_s", "tpot_s")
KERNELS_MEASURED = ("h100", "h200")  # presets whose kernels docs/validation.md validates


def report_fields(report, chip) -> dict:  # noqa: ANN001
    """A run's interval fields: each time of its headline with p10 / p90 from the
    whole-model errors (``model_infer``; a prefill's from the measured prefills and a decode
    step's from the measured decodes where both are kept, as their errors differ), or
    ``validated: False`` (no chip: a system, whose multi-chip runs have no whole-model
    validation yet)."""
    if chip is None:
        return {"validated": False, "why": "multi-chip runs have no whole-model "
                                           "measurements yet"}
    head = report.headline()
    out: dict = {"validated": validated(chip)}
    kinds = table()["kinds"]
    if not out["validated"] or "model_infer" not in kinds:
        why = ("its kernels are validated (docs/validation.md), but whole models were "
               "measured on the " + ", ".join(table()["presets"]) + " only") \
            if chip.name in KERNELS_MEASURED and _as_shipped(chip) else \
            "no measurements of this chip as configured"
        return {"validated": False, "why": why}
    # each time as its prefill part and its decode part, each part with its phase's ratios
    # (the whole-model ones where the table keeps no phases)
    pre = kinds.get("model_infer.prefill", kinds["model_infer"])
    dec = kinds.get("model_infer.decode", kinds["model_infer"])
    parts = {"ttft_s": (head.get("ttft_s", 0.0), 0.0), "tpot_s": (0.0, head.get("tpot_s", 0.0))}
    if report.mode == "prefill":
        parts["latency_s"] = (head["latency_s"], 0.0)
    elif report.mode == "decode":
        parts["latency_s"] = (0.0, head["latency_s"])
    else:
        parts["latency_s"] = (head["ttft_s"], head["latency_s"] - head["ttft_s"])
    for name in TIMES:
        if name in head:
            p, d = parts[name]
            out[f"{name}_p10"] = p * pre["p10"] + d * dec["p10"]
            out[f"{name}_p90"] = p * pre["p90"] + d * dec["p90"]
    out["basis"] = "; ".join(
        f"model_infer {ph}: measured/predicted p10 {e['p10']:.2f}, p90 {e['p90']:.2f} over "
        f"{e['rows']} held-out rows (coverage {e['coverage']:.0%} under cross-validation)"
        for ph, e in (("prefill", pre), ("decode", dec)))
    return out
