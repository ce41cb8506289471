"""Sweeps: rows per point, resume, failures, Dask = local, Optuna's front, limits."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from experiments.sweep.runner import RESULTS, pareto, run_sweep
from experiments.sweep.spec import SweepError, point_id, sweep_from_dict

BASE = {"model": "tiny-llama", "chip": "edge", "phase": "decode", "batch": 1, "ctx": 32}


def spec(**kw):
    data = {"name": "t", "base": BASE, "parameters": {
        "chip.core.array.rows": [16, 32], "mapping.low_rank": [0, 8, 100000]}, **kw}
    return sweep_from_dict(data, "t.yaml")


def stable(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop(columns=["wall_s"]).reset_index(drop=True)


def test_grid_gives_one_row_per_point(tmp_path):
    s = spec()
    df = run_sweep(s, tmp_path, workers=1, progress=False)
    assert len(df) == 6
    assert list(df["chip.core.array.rows"]) == [16, 16, 16, 32, 32, 32]
    assert (tmp_path / "results.csv").exists()


def test_failing_point_is_a_row_not_the_end(tmp_path):
    df = run_sweep(spec(), tmp_path, workers=2, progress=False)
    bad = df[df["mapping.low_rank"] == 100000]  # a valid value no point can map
    assert len(bad) == 2 and set(bad["status"]) == {"failed"}
    assert all("--low-rank 100000" in e for e in bad["error"])
    assert set(df[df["mapping.low_rank"] != 100000]["status"]) == {"ok"}


def test_interrupted_then_resumed_equals_uninterrupted(tmp_path):
    s = spec()
    whole = run_sweep(s, tmp_path / "a", workers=2, progress=False)
    part = tmp_path / "b"
    part.mkdir()
    lines = (tmp_path / "a" / RESULTS).read_text().splitlines()
    (part / RESULTS).write_text("\n".join(lines[:2]) + "\n" + lines[2][:25])  # torn line
    done_before = {json.loads(x)["point_id"] for x in lines[:2]}
    resumed = run_sweep(s, part, workers=2, resume=True, progress=False)
    pd.testing.assert_frame_equal(stable(resumed), stable(whole))
    rows = [json.loads(x) for x in (part / RESULTS).read_text().splitlines()]
    assert len(rows) == 6 and len({r["point_id"] for r in rows}) == 6
    kept = [r for r in rows if r["point_id"] in done_before]
    assert [r["wall_s"] for r in kept] == [json.loads(x)["wall_s"] for x in lines[:2]]


def test_dask_backend_gives_the_local_table(tmp_path):
    from dask.distributed import LocalCluster

    s = spec(parameters={"chip.core.array.rows": [16, 32], "mapping.quant": [None, "int8"]})
    local = run_sweep(s, tmp_path / "local", workers=2, progress=False)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
        remote = run_sweep(s, tmp_path / "dask", dask=cluster.scheduler_address,
                           progress=False)
    pd.testing.assert_frame_equal(stable(remote), stable(local))


def test_optuna_search_returns_a_non_dominated_set(tmp_path):
    s = sweep_from_dict({"name": "o", "base": BASE, "mode": "optuna", "trials": 6,
                         "objectives": ["latency_s", "energy_j"],
                         "parameters": {"chip.core.array.rows": [8, 16, 32],
                                        "chip.core.array.cols": [8, 16, 32]}}, "o.yaml")
    df = run_sweep(s, tmp_path, workers=2, progress=False)
    assert len(df) == 6
    front = pareto(df, s.objectives)
    assert len(front) >= 1
    for _, a in front.iterrows():
        for _, b in df.iterrows():
            assert not (b["latency_s"] < a["latency_s"] and b["energy_j"] < a["energy_j"])


def test_point_over_its_time_budget_is_recorded_as_timed_out(tmp_path):
    s = spec(timeout=1e-6, parameters={"chip.core.array.rows": [16]})
    df = run_sweep(s, tmp_path, workers=1, progress=False)
    assert list(df["status"]) == ["timeout"] and "budget" in df["error"][0]


@pytest.mark.parametrize("data, message", [
    ({"parameters": {"chip.core.array.rows": list(range(400)),
                     "chip.core.array.cols": list(range(400))}}, "exceed the limit of 100,000"),
    ({"parameters": {"core.rows": [1]}}, "parameters.core.rows: a path starts with"),
    ({"parameters": {"chip.core.array.rows": []}}, "an empty list"),
    ({"parameters": {"chip.x": [1]}, "mode": "random"}, "samples: a positive integer"),
    ({"parameters": {"chip.x": [1]}, "objectives": ["speed"]}, "unknown 'speed'"),
    ({"parameters": {"chip.x": [1]}, "color": 3}, "color: unknown field"),
])
def test_bad_sweep_files(data, message):
    with pytest.raises(SweepError, match=message.replace("(", r"\(").replace(")", r"\)")):
        sweep_from_dict({"base": BASE, **data}, "s.yaml")


def test_point_ids_are_stable():
    assert point_id({"a": 1, "b": None}) == point_id({"b": None, "a": 1})


def test_tied_parameters_set_their_paths_together(tmp_path):
    s = sweep_from_dict({"name": "tie", "base": BASE, "parameters": {
        "chip.core.array.rows,chip.core.array.cols": [[16, 16], [32, 32]]}}, "t.yaml")
    df = run_sweep(s, tmp_path, workers=1, progress=False)
    assert list(df["chip.core.array.rows"]) == [16, 32]
    assert list(df["chip.core.array.cols"]) == [16, 32]
    with pytest.raises(SweepError, match="tied paths take lists of 2 values"):
        sweep_from_dict({"base": BASE, "parameters": {"chip.a,chip.b": [1, 2]}}, "t.yaml")
