"""Fitting chip parameters to measured rows, and cross-validating them.

A fit is a coordinate descent on log-scale multipliers of named chip fields (dotted paths
into the chip's dictionary, ``core.vector.op_cycles.norm``), minimising the mean absolute
percentage error of the rows' predictions. It is how the GPU presets' fitted values were
obtained (each is copied into its preset by a person, with what it was fitted on).

Cross-validation asks whether a fitted value describes a mechanism or the calibration's
shapes: the rows are split into regimes by a column (row width ``H``, a model, a group
size), and for each regime the parameters are fitted on the others and the regime is
predicted with them. The held-out error is what a user should expect on shapes nobody
measured; a parameter that only helps in-sample is over-fitted.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import pandas as pd

from experiments.measured_work import Target
from isa.errors import TesseraError

STEPS = (2.0, 1.25, 1.06)  # multiplicative step sizes, coarse to fine
# what ``--cv`` refits when no ``--fit`` is given: the fields docs/validation.md says were
# fitted on a file of that kind
DEFAULT_FIT = {
    "vector": ("core.vector.op_cycles.norm", "core.vector.row_cycles.norm",
               "core.vector.op_cycles.softmax", "core.vector.row_cycles.softmax",
               "core.vector.warp_op_cycles.softmax", "core.vector.op_cycles.welford"),
    "memory": ("hbm.efficiency", "core.dma.latency"),
    "gemm": ("core.array.startup", "l2.bandwidth"),
    "gemm_lowp": ("core.array.macs_per_pe.int8", "core.array.startup"),
}


class FitError(TesseraError):
    """A parameter or grouping the fit cannot use (named in the message)."""


def get(data: dict, dotted: str) -> float:
    node = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise FitError(f"{dotted}: no such chip field (at '{part}')")
        node = node[part]
    if isinstance(node, bool) or not isinstance(node, int | float):
        raise FitError(f"{dotted}: not a number ({node!r})")
    return float(node)


def put(data: dict, dotted: str, value: float) -> None:
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def mape_of(target: Target, kind: str, rows: pd.DataFrame, data: dict) -> float:
    """MAPE of ``rows`` predicted on the chip ``data`` describes (inf if none predicted)."""
    from experiments.validate import summary, validate_rows
    from hardware.chips import ConfigError, chip_from_dict

    try:
        chip = chip_from_dict(data, "fit")
    except ConfigError:  # a step past a field's bounds (an efficiency above 1): not a fit
        return math.inf
    df = validate_rows(replace(target, chip=chip), kind, rows)
    err = summary(kind, df)["mape_pct"]
    return err if math.isfinite(err) else math.inf


def fit(target: Target, kind: str, rows: pd.DataFrame, params: list[str], rounds: int = 4,
        log: Callable[[str], None] | None = None) -> tuple[dict[str, float], float]:
    """(fitted values, their MAPE on ``rows``), starting from ``target``'s chip."""
    from hardware.chips import chip_from_dict, chip_to_dict

    data = chip_to_dict(target.chip)
    for p in params:
        get(data, p)  # a field that does not exist is an error before any simulation
    best = mape_of(target, kind, rows, data)
    for step in STEPS:
        for _ in range(rounds):
            improved = False
            for p in params:
                for factor in (step, 1 / step):
                    trial = chip_to_dict(chip_from_dict(data, "fit"))
                    old = get(trial, p)
                    put(trial, p, old * factor if old else factor - 1)
                    err = mape_of(target, kind, rows, trial)
                    if err < best - 1e-6:
                        best, data, improved = err, trial, True
                        if log is not None:
                            log(f"  {p} = {get(data, p):.4g}: MAPE {best:.2f}%")
                        break
            if not improved:
                break
    return {p: get(data, p) for p in params}, best


@dataclass(frozen=True)
class Fold:
    """One regime held out: what was fitted on the others and the error on it."""

    held: str  # the regime's value of the grouping column
    rows: int
    fitted: dict[str, float]
    train_mape: float  # on the rows the fit saw
    held_mape: float  # on this regime, which it did not


def cross_validate(target: Target, kind: str, df: pd.DataFrame, by: str, params: list[str],
                   rounds: int = 2, log: Callable[[str], None] | None = None
                   ) -> tuple[list[Fold], pd.DataFrame]:
    """Leave-one-regime-out: the folds, and every held-out row with its prediction made
    by parameters fitted without its regime (``ape_pct``: the cross-validated error)."""
    from experiments.validate import validate_rows
    from hardware.chips import chip_from_dict, chip_to_dict

    if by not in df.columns:
        raise FitError(f"--cv {by}: no such column (the file has {', '.join(df.columns)})")
    if target.system is not None:
        raise FitError(f"--cv refits chip fields; {target.name} is a system preset")
    regimes = list(dict.fromkeys(df[by].astype(str)))
    if len(regimes) < 2:
        raise FitError(f"--cv {by}: every row has {by} = {regimes[0] if regimes else '-'}; "
                       f"cross-validation needs at least two regimes")
    folds, held_rows = [], []
    for value in regimes:
        mask = df[by].astype(str) == value
        if log is not None:
            log(f"fold {by} = {value}: fitting on {int((~mask).sum())} rows")
        fitted, train = fit(target, kind, df[~mask], params, rounds, log)
        data = chip_to_dict(target.chip)
        for p, v in fitted.items():
            put(data, p, v)
        out = validate_rows(replace(target, chip=chip_from_dict(data, "fit")), kind, df[mask])
        out.insert(0, "cv_fold", value)
        held_rows.append(out)
        ok = out[out["skipped"] == ""]
        folds.append(Fold(value, int(mask.sum()), fitted, train,
                          float(ok["ape_pct"].mean()) if len(ok) else math.nan))
    return folds, pd.concat(held_rows, ignore_index=True)
