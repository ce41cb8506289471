"""Run a sweep's points on a local process pool or a Dask cluster, streaming results.

Every finished point is appended to ``results.jsonl`` as one line, written with a single
``write`` and flushed to disk, so a killed run loses at most the line being written — and
``--resume`` drops a torn last line, keeps every complete one and runs only the rest. Every
other file (the rewritten results on resume, the CSV and Parquet tables at the end) is
written to a temporary name and renamed into place, so a kill never leaves half a file.

A worker that dies (killed, out of memory) breaks the process pool: the points it may have
been running are run again one at a time, each in a fresh worker, and one whose worker dies
again is recorded as failed; the other points go on in a fresh pool.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pandas as pd

from experiments.sweep.evaluate import evaluate
from experiments.sweep.spec import SweepSpec, _untie, point_id

RESULTS = "results.jsonl"
OPTUNA_BATCH = 8  # trials asked at once: fixed, so a search does not depend on --workers


class PointTimeout(BaseException):
    """Raised by the alarm; a BaseException so a point's own error handling cannot eat it."""


def evaluate_point(base: dict, point: dict, timeout: float) -> dict:
    """``evaluate`` with a wall-clock budget (an alarm, where the worker's main thread runs
    it; Dask worker threads run without one)."""
    use_alarm = timeout > 0 and threading.current_thread() is threading.main_thread() and \
        hasattr(signal, "setitimer")
    if not use_alarm:
        return evaluate(base, point)

    def on_alarm(signum, frame):  # noqa: ANN001, ARG001
        raise PointTimeout

    old = signal.signal(signal.SIGALRM, on_alarm)
    try:
        signal.setitimer(signal.ITIMER_REAL, timeout)
        return evaluate(base, point)
    except PointTimeout:
        return {"status": "timeout", "error": f"exceeded the {timeout:g} s budget per point",
                "wall_s": timeout}
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def read_results(path: Path) -> list[dict]:
    """Complete rows of a results file (a torn last line from a kill is left out)."""
    rows = []
    if not path.exists():
        return rows
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def _append(fh, row: dict) -> None:  # noqa: ANN001
    fh.write(json.dumps(row, sort_keys=True, default=str) + "\n")
    fh.flush()
    os.fsync(fh.fileno())


def write_atomic(path: Path, write: Callable[[Path], object]) -> None:
    """``write(tmp)`` then rename over ``path``: readers see the old file or the new one."""
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def run_sweep(spec: SweepSpec, out: Path, workers: int = 2, dask: str | None = None,
              resume: bool = False, progress: bool = True) -> pd.DataFrame:
    out.mkdir(parents=True, exist_ok=True)
    path = out / RESULTS
    done = read_results(path) if resume else []
    if not resume and path.exists():
        path.unlink()
    elif done:  # rewrite without a torn line, so appends start on a line of their own
        text = "".join(json.dumps(r, sort_keys=True, default=str) + "\n" for r in done)
        write_atomic(path, lambda tmp: tmp.write_text(text))
    seen = {r["point_id"] for r in done}
    about = json.dumps(describe(spec), indent=2, default=str)
    write_atomic(out / "sweep.json", lambda tmp: tmp.write_text(about))
    with path.open("a") as fh:
        if spec.mode == "optuna":
            _optuna(spec, fh, workers, dask, done, progress)
        else:
            todo = [p for p in spec.points() if point_id(p) not in seen]
            bar = _bar(spec.size(), len(done), progress)
            for point, row in _execute(spec, todo, workers, dask):
                _append(fh, _row(spec, point, row))
                _tick(bar, row)
            if bar is not None:
                bar.close()
    table = results_table(read_results(path), spec)
    write_atomic(out / "results.csv", lambda tmp: table.to_csv(tmp, index=False))
    try:
        write_atomic(out / "results.parquet", lambda tmp: table.to_parquet(tmp, index=False))
    except (ImportError, ValueError):
        (out / ".results.parquet.tmp").unlink(missing_ok=True)
    return table


def _row(spec: SweepSpec, point: dict, result: dict) -> dict:
    return {"point_id": point_id(point), "seed": spec.seed, **point, **result}


def results_table(rows: list[dict], spec: SweepSpec) -> pd.DataFrame:
    """One row per point in the sweep's own order (so runs in any order compare equal)."""
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    if spec.mode != "optuna":
        order = {point_id(p): i for i, p in enumerate(spec.points())}
        df = df.assign(_order=df["point_id"].map(order)).sort_values("_order")
        df = df.drop(columns="_order").drop_duplicates("point_id", keep="last")
    front = [c for c in ("point_id", *spec.columns, "status", "error") if c in df]
    return df[front + sorted(c for c in df.columns if c not in front)].reset_index(drop=True)


def _execute(spec: SweepSpec, points: list[dict], workers: int, dask: str | None
             ) -> Iterator[tuple[dict, dict]]:
    if not points:
        return
    if dask:
        yield from _dask(spec, points, dask)
        return
    if workers <= 1:
        for p in points:
            yield p, evaluate_point(spec.base, p, spec.timeout)
        return
    yield from _pool(spec, points, workers)


def _pool(spec: SweepSpec, points: list[dict], workers: int) -> Iterator[tuple[dict, dict]]:
    """Points on a process pool that survives the death of a worker (see the module doc)."""
    marks = Path(tempfile.mkdtemp(prefix="tessera-sweep-"))
    try:
        queue = list(points)
        while queue:
            broken: list[dict] = []
            yield from _batch(spec, queue, workers, marks, broken)
            running = [p for p in broken if (marks / point_id(p)).exists()]
            queue = [p for p in broken if not (marks / point_id(p)).exists()]
            for p in running:  # alone, so a point that kills its worker is known
                (marks / point_id(p)).unlink()
                again: list[dict] = []
                yield from _batch(spec, [p], 1, marks, again)
                if again:
                    yield p, {"status": "failed", "wall_s": 0.0, "error": "worker died "
                              "twice running this point (killed, or out of memory?)"}
    finally:
        shutil.rmtree(marks, ignore_errors=True)


def _batch(spec: SweepSpec, points: list[dict], workers: int, marks: Path,
           broken: list[dict]) -> Iterator[tuple[dict, dict]]:
    """One pool over ``points``; the points lost when the pool broke go to ``broken``."""
    from mapper.forkmap import one_process

    # pool workers are not daemonic: without this each would fork one more per core
    with ProcessPoolExecutor(max_workers=workers, initializer=one_process) as pool:
        futures = {pool.submit(_marked, spec.base, p, spec.timeout, marks): p for p in points}
        for fut in as_completed(futures):
            try:
                row = fut.result()
            except BrokenProcessPool:
                broken.append(futures[fut])
                continue
            except Exception as exc:  # noqa: BLE001 - a lost result fails its point only
                row = {"status": "failed", "error": f"worker error: {type(exc).__name__}",
                       "wall_s": 0.0}
            yield futures[fut], row


def _marked(base: dict, point: dict, timeout: float, marks: Path) -> dict:
    """``evaluate_point``, leaving a mark while it runs: the driver's record of which points
    a dead worker took with it."""
    mark = marks / point_id(point)
    mark.touch()
    row = evaluate_point(base, point, timeout)
    mark.unlink(missing_ok=True)
    return row


def _dask(spec: SweepSpec, points: list[dict], address: str) -> Iterator[tuple[dict, dict]]:
    from dask.distributed import Client
    from dask.distributed import as_completed as dask_completed

    with Client(address) as client:
        futures = {client.submit(evaluate_point, spec.base, p, spec.timeout, pure=False): i
                   for i, p in enumerate(points)}
        for fut in dask_completed(list(futures)):
            try:
                row = fut.result()
            except Exception as exc:  # noqa: BLE001
                row = {"status": "failed", "error": f"worker died: {type(exc).__name__}",
                       "wall_s": 0.0}
            yield points[futures[fut]], row


def _optuna(spec: SweepSpec, fh, workers: int, dask: str | None, done: list[dict],  # noqa: ANN001
            progress: bool) -> None:
    """Multi-objective search (NSGA-II) over the listed values, asked and told in batches of
    ``OPTUNA_BATCH`` evaluated in parallel and told in order (so the seed alone fixes the
    trials, whatever the workers); a resumed search replays the finished trials first."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dirs = ["maximize" if o.startswith("tokens") or o == "capacity_req_s" else "minimize"
            for o in spec.objectives]
    study = optuna.create_study(directions=dirs,
                                sampler=optuna.samplers.NSGAIISampler(seed=spec.seed))
    dists = {k: optuna.distributions.CategoricalDistribution(
        [json.dumps(v) for v in vals]) for k, vals in spec.parameters.items()}
    for r in done:
        if r.get("status") == "ok":
            params = {k: json.dumps([r[p] for p in k.split(",")] if "," in k else r[k])
                      for k in spec.parameters}
            study.add_trial(optuna.trial.create_trial(
                params=params, distributions=dists,
                values=[r[o] for o in spec.objectives]))
    bar = _bar(spec.samples, len(done), progress)
    left = spec.samples - len(done)
    while left > 0:
        batch = [study.ask(dists) for _ in range(min(OPTUNA_BATCH, left))]
        points = [_untie({k: json.loads(t.params[k]) for k in spec.parameters})
                  for t in batch]
        results = dict((point_id(p), r) for p, r in _execute(spec, points, workers, dask))
        for trial, point in zip(batch, points):
            row = results[point_id(point)]
            _append(fh, _row(spec, point, row))
            _tick(bar, row)
            if row["status"] == "ok":
                study.tell(trial, [row[o] for o in spec.objectives])
            else:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
        left -= len(batch)
    if bar is not None:
        bar.close()


def describe(spec: SweepSpec) -> dict:
    """What a sweep ran, for its report: the file's fields and the software versions."""
    return {"name": spec.name, "source": spec.source, "base": spec.base,
            "parameters": list(spec.parameters), "mode": spec.mode,
            "objectives": list(spec.objectives), "points": spec.size(),
            "versions": versions()}


def versions() -> dict[str, str]:
    """Versions of Tessera and of the libraries whose behaviour shapes a result."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for dist in ("tessera-sim", "numpy", "simpy", "pandas"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "not installed"
    return out


# What a row is run on rather than what is designed: points that differ in these are
# different questions, so each combination has a Pareto front of its own.
SCENARIO = ("model", "phase", "batch", "seq", "ctx", "tokens")


def scenarios(df: pd.DataFrame) -> list[str]:
    """The scenario columns that vary in ``df``."""
    return [c for c in SCENARIO if c in df and df[c].astype(str).nunique() > 1]


def pareto(df: pd.DataFrame, objectives: Iterable[str],
           by: list[str] | None = None) -> pd.DataFrame:
    """The non-dominated rows (minimising, except objectives named tokens*: maximised),
    within each scenario (``by``: default, the scenario columns that vary)."""
    ok = df[df["status"] == "ok"] if "status" in df else df
    by = scenarios(ok) if by is None else by
    if by:
        groups = ok.groupby(by, sort=False, dropna=False)
        fronts = [_front(group, objectives) for _, group in groups]
        return pd.concat(fronts) if fronts else ok.iloc[:0]
    return _front(ok, objectives)


def front_table(df: pd.DataFrame, objectives: Iterable[str], columns: list[str]) -> str:
    """Every successful point as text, the Pareto-front rows marked ``*`` in column
    ``front`` (fronts per scenario); unset options (null) shown as ``none``."""
    ok = df[df["status"] == "ok"] if "status" in df else df
    on_front = set(pareto(df, objectives).index)
    shown = ok[[c for c in columns if c in ok]].copy()
    shown.insert(0, "front", ["*" if i in on_front else "" for i in ok.index])
    by = scenarios(ok)
    head = (f"Pareto front ({', '.join(objectives)}"
            + (f"; one per {', '.join(by)}" if by else "") + "): rows marked *")
    return head + "\n" + shown.astype(object).fillna("none").to_string(index=False)


def _front(ok: pd.DataFrame, objectives: Iterable[str]) -> pd.DataFrame:
    objs = list(objectives)
    sign = [(-1.0 if o.startswith("tokens") else 1.0) for o in objs]
    vals = [[s * float(row[o]) for o, s in zip(objs, sign)] for _, row in ok.iterrows()]
    keep = []
    for i, a in enumerate(vals):
        dominated = any(all(b[k] <= a[k] for k in range(len(a))) and b != a for b in vals)
        if not dominated:
            keep.append(i)
    return ok.iloc[keep]


def _bar(total: int, start: int, enabled: bool):  # noqa: ANN202
    if not enabled:
        return None
    from tqdm import tqdm

    bar = tqdm(total=total, initial=start, unit="point", dynamic_ncols=True)
    bar.set_postfix(failed=0)
    bar.failed = 0  # type: ignore[attr-defined]
    return bar


def _tick(bar, row: dict) -> None:  # noqa: ANN001
    if bar is None:
        return
    if row.get("status") != "ok":
        bar.failed += 1
    bar.update(1)
    bar.set_postfix(failed=bar.failed, remaining=bar.total - bar.n)
