"""Validation against measured GPUs: predict every row of a measured file by mapping and
simulating the work it describes (``experiments.measured_work``) on a preset, exactly as
for any other chip, and report the error.

File kinds are recognised by their columns (see the measured data's README): gemm,
gemm_lowp, memory, vector, attention, layers, tp_layers, model_infer (whole models),
iterations (serving iterations of a continuous batch),
collectives, power. A row the
model cannot express is reported as skipped with the reason, never dropped.

How the figures were taken matters to the prediction in one way: each call ran back to
back in CUDA graphs (``CALLS_PER_MEASUREMENT`` calls), so a power-capped chip's limiter had
only that long to pull the clock down: a capped row is simulated again at the mean clock of
that burst (``simulator.run.burst_clock``). Power rows ran for seconds: the steady state.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from experiments.measured_train import MULTI
from experiments.measured_train import PREDICT as TRAIN
from experiments.measured_work import PREDICT, Skip, Target
from experiments.pieces import each
from isa.errors import TesseraError

KINDS = {  # kind -> columns that identify it, most specific first
    "train_layers": {"model", "B", "S", "recompute", "n_layers", "fwd_ms_per_layer",
                     "fwd_bwd_ms_per_layer"},
    "train_step": {"model", "n_params", "micro_B", "S", "grad_accum", "step_ms"},
    "optimizer": {"impl", "n_params", "ms"},
    "energy": {"workload", "joules_per_unit", "mean_power_w"},
    "power": {"op", "calls_per_s", "mean_power_w"},
    "tp_layers": {"model", "phase", "world", "B", "S", "ctx", "ms_per_layer"},
    "layers": {"model", "phase", "B", "S", "ctx", "ms_per_layer"},
    "model_infer": {"model", "phase", "B", "S", "ctx", "ms"},
    "iterations": {"model", "prefill_lens", "decode_batch", "decode_ctx", "ms"},
    "attention": {"phase", "B", "Hq", "Hkv", "Sq", "Skv", "D", "causal", "ms"},
    "collectives": {"op", "world", "bytes", "ms"},
    "gemm": {"dtype", "M", "K", "N", "ms"},
    "memory": {"op", "bytes", "ms"},
    "vector": {"op", "T", "H", "ms"},
}
MEASURED = {"power": "mean_power_w", "layers": "ms_per_layer", "tp_layers": "ms_per_layer"}
HALF_PRECISION = {"bf16", "fp16"}
CALLS_PER_MEASUREMENT = 7 * 8  # 7 graph replays x R = 8 calls (the measured README)


class ValidateError(TesseraError):
    """A measured file or preset the validator cannot use (named in the message)."""


def load_target(name: str) -> Target:
    """A chip preset (h100, h200, a chip YAML) or a system preset (h200x2, h200x4, ...)."""
    from hardware.chips import ConfigError, list_presets, load_chip
    from hardware.systems import list_systems, load_system

    if name in list_systems():
        system = load_system(name)
        return Target(name, system.chips[0], system)
    if name in list_presets() or name.endswith((".yaml", ".yml")):
        try:
            return Target(name, load_chip(name))
        except ConfigError as chip_error:
            try:
                system = load_system(name)
            except ConfigError:
                raise chip_error from None
            return Target(name, system.chips[0], system)
    raise ValidateError(f"unknown preset '{name}' (chips: {', '.join(list_presets())}; "
                        f"systems: {', '.join(list_systems())}; or a YAML file)")


def read_measured(path: Path) -> tuple[str, pd.DataFrame]:
    """(kind, rows) of a measured CSV, or a one-line error naming the file."""
    try:
        df = pd.read_csv(path)
    except FileNotFoundError:
        raise ValidateError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, ValueError, pd.errors.ParserError,
            pd.errors.EmptyDataError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValidateError(f"{path}: cannot read as CSV ({first})") from None
    df.columns = [str(c).strip() for c in df.columns]
    return kind_of(df, str(path)), df


def kind_of(df: pd.DataFrame, source: str) -> str:
    cols = set(df.columns)
    for kind, needed in KINDS.items():
        if needed <= cols:
            if kind == "gemm" and set(df["dtype"].astype(str)) - HALF_PRECISION:
                return "gemm_lowp"
            return kind
    shown = ", ".join(str(c).encode("unicode_escape").decode() for c in df.columns)
    raise ValidateError(f"{source}: columns {shown or '(none)'} match no "
                        f"measured kind (gemm, gemm_lowp, memory, vector, attention, layers, "
                        f"tp_layers, model_infer, iterations, collectives, power, train_layers, "
                        f"train_step, optimizer, energy: see "
                        f"docs/validation.md)")


# What decides a row's answer: every package's code and the model and chip presets beside it
SOURCES = ("isa", "hardware", "simulator", "mapper", "experiments")


def predict_row(target: Target, kind: str, row: pd.Series) -> dict:
    """The model's figures for one row: ``predicted`` (ms per call, or mean board power for
    power rows), with the clock and the mean power the run had.

    A row answered before is answered from the cache (``simulator.cache.Memo``) under a key
    of every package's code and preset files, the whole target (chip or system fields, the
    instruction budget), the row's every column and the bytes of a model file it names, so
    an edit anywhere asks again; its kernels are then priced from the kernel-cost cache."""
    from simulator.cache import Memo, code_digest, current

    store = current()
    if store is None:
        return _predict_row(target, kind, row)
    memo = Memo(store, "validate:" + code_digest(SOURCES, ("*.py", "*.c", "*.yaml")))
    key = repr((kind, target, sorted((str(k), str(v)) for k, v in row.items()),
                _named_files(row)))
    figures = memo.get(key)
    if isinstance(figures, dict):
        store.stats.answers += 1
        return figures
    figures = _predict_row(target, kind, row)
    try:
        memo[key] = figures
    except (TypeError, ValueError):  # a figure JSON cannot hold: answered, not kept
        pass
    return figures


def _named_files(row: pd.Series) -> list[str]:
    """A digest of each file a row names (a model YAML or config.json in its ``model``
    column): editing the file asks the row again."""
    import hashlib

    out = []
    for v in row.values:
        if isinstance(v, str) and v.endswith((".yaml", ".yml", ".json")):
            try:
                out.append(hashlib.blake2b(Path(v).read_bytes(), digest_size=16).hexdigest())
            except OSError:
                out.append("")  # not a readable file: the row says why when it is priced
    return out


def _predict_row(target: Target, kind: str, row: pd.Series) -> dict:
    from simulator.run import burst_clock

    if kind in TRAIN:
        return TRAIN[kind](target, row)
    work = PREDICT[kind]
    result = work(target, row)
    if isinstance(result, float):  # an idle power row
        return {"predicted": result, "clock_mhz": target.chip.clock_hz / 1e6,
                "power_w": result}
    if kind == "power":  # seconds back to back: the limiter has settled (steady state)
        return {"predicted": result.avg_power_w, "clock_mhz": result.clock_hz / 1e6,
                "power_w": result.avg_power_w}
    power = target.chip.power
    if result.power_capped and power.response_s > 0:
        # the limiter had only the measurement's length to act: the burst's mean clock
        clock = burst_clock(target.chip.clock_hz, result.clock_hz,
                            CALLS_PER_MEASUREMENT * result.time_s, power.response_s)
        result = work(target.at_clock(clock), row)
    return {"predicted": result.time_s * 1e3, "clock_mhz": result.clock_hz / 1e6,
            "power_w": result.avg_power_w}


def validate(target: Target, path: Path, progress=None) -> tuple[str, pd.DataFrame]:  # noqa: ANN001
    """(kind, rows with predicted, measured, ape_pct, and skipped = the reason or "")."""
    from experiments.uncertainty import rows_interval

    kind, df = read_measured(path)
    df = validate_rows(target, kind, df, progress)
    return kind, rows_interval(kind, None if target.system is not None else target.chip, df)


def validate_rows(target: Target, kind: str, df: pd.DataFrame, progress=None  # noqa: ANN001
                  ) -> pd.DataFrame:
    """``validate`` on rows already read (a part of a file: cross-validation's folds)."""
    if kind in TRAIN:
        return _validate_multi(target, kind, df, progress)
    column = MEASURED.get(kind, "ms")

    def one(item: tuple[int, pd.Series]) -> dict:
        line, row = item
        rec = row.to_dict()
        measured = pd.to_numeric(row[column], errors="coerce")
        try:
            if not (measured > 0 and math.isfinite(measured)):
                raise Skip(f"row {line}: {column} '{row[column]}' is not a positive number")
            figures = predict_row(target, kind, row)
            predicted = figures["predicted"]
            rec.update(predicted=predicted, measured=float(measured),
                       ape_pct=100 * abs(predicted - measured) / measured, skipped="",
                       clock_mhz=figures["clock_mhz"], power_w=figures["power_w"])
        except Skip as why:
            rec.update(predicted=math.nan, measured=float(measured), ape_pct=math.nan,
                       skipped=f"row {line}: {why}" if not str(why).startswith("row ")
                       else str(why))
        except KeyError as exc:  # a column this row's work needs is missing
            rec.update(predicted=math.nan, measured=float(measured), ape_pct=math.nan,
                       skipped=f"row {line}: no column {exc.args[0]!r} for this row")
        except TesseraError as exc:  # the model refuses the row (too big, no tiling, ...)
            rec.update(predicted=math.nan, measured=float(measured), ape_pct=math.nan,
                       skipped=f"row {line}: {exc}")
        return rec
    # rows are independent: side by side on the machine's cores (experiments.pieces)
    rows = list(zip(_lines(df), (r for _, r in df.iterrows())))
    return pd.DataFrame(each(one, rows, _reporting(progress)))


def _reporting(progress):  # noqa: ANN001, ANN202
    """A ``bar`` for ``experiments.pieces.each`` that calls ``progress(done, total)``."""
    if progress is None:
        return None

    def bar(results, total: int):  # noqa: ANN001, ANN202
        for i, r in enumerate(results):
            progress(i + 1, total)
            yield r
    return bar


def _validate_multi(target: Target, kind: str, df: pd.DataFrame, progress) -> pd.DataFrame:  # noqa: ANN001
    """Rows that measure several figures: one record per (row, measured column), its
    ``metric`` naming the column."""
    cols = MULTI.get(kind, ("ms",))
    out = []
    for i, (line, row) in enumerate(zip(_lines(df), (r for _, r in df.iterrows()))):
        present = [c for c in cols if c in row.index]
        try:
            figures = predict_row(target, kind, row)
            why = ""
        except Skip as exc:
            figures, why = {}, str(exc)
        except KeyError as exc:
            figures, why = {}, f"no column {exc.args[0]!r} for this row"
        except TesseraError as exc:
            figures, why = {}, str(exc)
        for c in present:
            rec = row.to_dict()
            measured = pd.to_numeric(row[c], errors="coerce")
            predicted = figures.get(c, math.nan)
            bad = not (measured > 0 and math.isfinite(measured))
            reason = why or (f"{c} '{row[c]}' is not a positive number" if bad else "")
            rec.update(metric=c, predicted=predicted, measured=float(measured),
                       ape_pct=math.nan if reason else 100 * abs(predicted - measured)
                       / measured, skipped=f"row {line}: {reason}" if reason else "")
            out.append(rec)
        if progress is not None:
            progress(i + 1, len(df))
    return pd.DataFrame(out)


def _lines(df: pd.DataFrame) -> list[int]:
    """Each row's line in its file (the header is line 1), also for a part of the file."""
    if pd.api.types.is_integer_dtype(df.index):
        return [int(i) + 2 for i in df.index]
    return list(range(2, len(df) + 2))


def summary(kind: str, df: pd.DataFrame) -> dict:
    if "metric" in df.columns and len(df):
        parts = {m: _summary(kind, part) for m, part in df.groupby("metric", sort=False)}
        first = next(iter(parts.values()))
        return {**first, "metrics": {m: {k: v for k, v in s.items() if k != "kind"}
                                     for m, s in parts.items()}}
    return _summary(kind, df)


def _summary(kind: str, df: pd.DataFrame) -> dict:
    ok = df[df["skipped"] == ""] if len(df) else df
    ape = ok["ape_pct"] if len(ok) else pd.Series(dtype=float)
    nan = float("nan")
    from experiments.uncertainty import inside

    out = {"kind": kind, "cases": int(len(ok)), "skipped": int(len(df) - len(ok)),
           "mape_pct": float(ape.mean()) if len(ok) else nan,
           "median_ape_pct": float(ape.median()) if len(ok) else nan,
           "max_ape_pct": float(ape.max()) if len(ok) else nan}
    if (hits := inside(ok)) is not None:
        out["inside_interval"], out["with_interval"] = hits
    return out
