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
    "layers": ("core.dma.gemm_window",),
    "collectives": tuple(f"link.protocols.{p}.{f}" for p in ("LL", "LL128", "Simple")
                         for f in ("latency", "efficiency")),
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


def read_field(target: Target, dotted: str) -> float:
    """A fitted field's value: a chip field (``hbm.efficiency``) on a chip target, a system
    field (``link.protocols.LL.latency``: protocols by name) on a system target."""
    from hardware.chips import chip_to_dict

    if target.system is None:
        return get(chip_to_dict(target.chip), dotted)
    value = _system_node(target.system, dotted)[0]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FitError(f"{dotted}: not a number ({value!r})")
    return float(value)


def with_fields(target: Target, values: dict[str, float]) -> Target | None:
    """``target`` with ``values`` put in its fields; None if one leaves its bounds (an
    efficiency above 1): not a point the fit may use."""
    from hardware.chips import ConfigError, chip_from_dict, chip_to_dict

    if target.system is None:
        data = chip_to_dict(target.chip)
        for p, v in values.items():
            put(data, p, v)
        try:
            return replace(target, chip=chip_from_dict(data, "fit"))
        except ConfigError:
            return None
    system = target.system
    for p, v in values.items():
        system = _system_put(system, p.split("."), v, p)
        if system is None:
            return None
    return replace(target, system=system)


def _system_node(obj: object, dotted: str) -> tuple[object, dict]:
    """(value, field metadata) at ``dotted`` in a system description."""
    import dataclasses

    meta: dict = {}
    for part in dotted.split("."):
        if isinstance(obj, tuple):  # named items: a link's protocols
            named = [x for x in obj if getattr(x, "name", None) == part]
            if not named:
                raise FitError(f"{dotted}: no such system field (no item named '{part}'; "
                               f"items: {', '.join(str(getattr(x, 'name', '?')) for x in obj)})")
            obj = named[0]
            continue
        fields = {f.name: f for f in dataclasses.fields(obj)} if dataclasses.is_dataclass(
            obj) else {}
        if part not in fields:
            raise FitError(f"{dotted}: no such system field (at '{part}')")
        meta = dict(fields[part].metadata)
        obj = getattr(obj, part)
    return obj, meta


def _system_put(obj: object, parts: list[str], value: float, dotted: str) -> object | None:
    """A copy of ``obj`` with ``value`` at ``parts`` (None if outside the field's bounds)."""
    import dataclasses

    head, rest = parts[0], parts[1:]
    if isinstance(obj, tuple):
        i = next(i for i, x in enumerate(obj) if getattr(x, "name", None) == head)
        new = _system_put(obj[i], rest, value, dotted)
        return None if new is None else (*obj[:i], new, *obj[i + 1:])
    if rest:
        new = _system_put(getattr(obj, head), rest, value, dotted)
        return None if new is None else dataclasses.replace(obj, **{head: new})
    from hardware.loader import in_bounds

    if not in_bounds(value, _system_node(obj, head)[1]):
        return None
    return dataclasses.replace(obj, **{head: value})


def mape_of(target: Target, kind: str, rows: pd.DataFrame) -> float:
    """MAPE of ``rows`` predicted on ``target`` (inf if none predicted)."""
    from experiments.validate import summary, validate_rows

    df = validate_rows(target, kind, rows)
    err = summary(kind, df)["mape_pct"]
    return err if math.isfinite(err) else math.inf


def fit(target: Target, kind: str, rows: pd.DataFrame, params: list[str], rounds: int = 4,
        log: Callable[[str], None] | None = None) -> tuple[dict[str, float], float]:
    """(fitted values, their MAPE on ``rows``), starting from ``target``'s values."""
    values = {p: read_field(target, p) for p in params}  # an unknown field: an error first
    best = mape_of(target, kind, rows)
    for step in STEPS:
        for _ in range(rounds):
            improved = False
            for p in params:
                for factor in (step, 1 / step):
                    old = values[p]
                    trial = {**values, p: old * factor if old else factor - 1}
                    moved = with_fields(target, trial)
                    err = math.inf if moved is None else mape_of(moved, kind, rows)
                    if err < best - 1e-6:
                        best, values, improved = err, trial, True
                        if log is not None:
                            log(f"  {p} = {values[p]:.4g}: MAPE {best:.2f}%")
                        break
            if not improved:
                break
    return values, best


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

    column, labels = regimes_of(df, by)
    if len(set(labels)) < 2:
        only = labels.iloc[0] if len(labels) else "-"
        raise FitError(f"--cv {by}: every row has {regime_name(by, only)}; "
                       f"cross-validation needs at least two regimes")
    folds, held_rows = [], []
    for value in dict.fromkeys(labels):
        mask = labels == value
        if log is not None:
            log(f"fold {regime_name(by, value)}: fitting on {int((~mask).sum())} rows")
        fitted, train = fit(target, kind, df[~mask], params, rounds, log)
        out = validate_rows(with_fields(target, fitted), kind, df[mask])
        out.insert(0, "cv_fold", value)
        held_rows.append(out)
        ok = out[out["skipped"] == ""]
        folds.append(Fold(value, int(mask.sum()), fitted, train,
                          float(ok["ape_pct"].mean()) if len(ok) else math.nan))
    return folds, pd.concat(held_rows, ignore_index=True)


def regimes_of(df: pd.DataFrame, by: str) -> tuple[str, pd.Series]:
    """(column, each row's regime): a column's values (``op``, ``model``), or bands of a
    numeric column cut at edges (``M:128,4096``: M<=128, 128<M<=4096, M>4096)."""
    column, _, edges = by.partition(":")
    if column not in df.columns:
        raise FitError(f"--cv {column}: no such column (the file has {', '.join(df.columns)})")
    if not edges:
        return column, df[column].astype(str)
    try:
        cuts = sorted(float(e) for e in edges.split(","))
    except ValueError:
        raise FitError(f"--cv {by}: the edges after ':' must be numbers, comma-separated"
                       ) from None
    x = pd.to_numeric(df[column], errors="coerce")
    if x.isna().any():
        raise FitError(f"--cv {by}: column {column} is not numeric on every row")

    def num(c: float) -> str:
        return str(int(c)) if c.is_integer() else f"{c:g}"

    def band(v: float) -> str:
        lo = None
        for c in cuts:
            if v <= c:
                return f"{column}<={num(c)}" if lo is None else f"{num(lo)}<{column}<={num(c)}"
            lo = c
        return f"{column}>{num(lo)}"
    return column, x.map(band)


def regime_name(by: str, held: str) -> str:
    """How a regime is named to a user: ``op = copy``, or a band as it is (``M<=128``)."""
    return held if ":" in by else f"{by} = {held}"
