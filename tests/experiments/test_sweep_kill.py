"""Nothing lost, everything reproducible: real SIGKILLs of a running `tessera sweep` (the
whole process group, or one worker), resume, and tables and traces compared bit for bit
with uninterrupted runs — across processes (so hash seeds differ) and worker counts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from experiments.cli import main
from experiments.sweep.runner import RESULTS, read_results, run_sweep
from experiments.sweep.spec import sweep_from_dict

pytestmark = pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")

SWEEP = """name: kill
base: {model: tiny-llama, chip: edge, phase: decode}
parameters:
  chip.core.array.rows: [8, 16, 32]
  batch: [1, 2, 4, 8]
  ctx: [32, 128]
timeout: 60
"""
POINTS = 24
HOST_TIMING = ("wall_s",)  # the host's clock: the only columns allowed to differ


def table(folder: Path) -> pd.DataFrame:
    df = pd.read_csv(folder / "results.csv").drop(columns=list(HOST_TIMING))
    return df.sort_values("point_id").reset_index(drop=True)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "kill.yaml"
    path.write_text(SWEEP)
    return path


@pytest.fixture(scope="module")
def reference(sweep, tmp_path_factory) -> pd.DataFrame:
    """The uninterrupted run, in this process, on one worker."""
    out = tmp_path_factory.mktemp("whole")
    assert main(["sweep", str(sweep), "--out", str(out), "--workers", "1",
                 "--no-progress"]) == 0
    df = table(out)
    assert len(df) == POINTS and set(df["status"]) == {"ok"}
    return df


def start(sweep: Path, out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "experiments.cli", "sweep", str(sweep), "--out", str(out),
         "--workers", "2", "--no-progress", *extra],
        start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for_rows(proc: subprocess.Popen, path: Path, rows: int, limit_s: float = 60) -> int:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        n = len(read_results(path))
        if n >= rows:
            return n
        assert proc.poll() is None, "the sweep ended before it could be killed"
        time.sleep(0.01)
    raise AssertionError(f"no {rows} rows in {limit_s} s")


def children(pid: int) -> list[int]:
    kids = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        kids += [int(x) for x in (task / "children").read_text().split()]
    return kids


def test_kill_9_of_the_sweep_then_resume_equals_an_uninterrupted_run(sweep, reference,
                                                                      tmp_path, capsys):
    out = tmp_path / "killed"
    proc = start(sweep, out)
    try:
        at_kill = wait_for_rows(proc, out / RESULTS, 3)
        assert children(proc.pid)  # the workers die with it: the whole group is killed
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "results.csv").exists()
    kept = read_results(out / RESULTS)
    assert at_kill <= len(kept) < POINTS  # killed mid-way; every complete line is a row
    assert main(["sweep", str(sweep), "--out", str(out), "--resume", "--workers", "2",
                 "--no-progress"]) == 0
    pd.testing.assert_frame_equal(table(out), reference)
    lines = (out / RESULTS).read_text().splitlines()
    rows = [json.loads(line) for line in lines]  # no torn or duplicated line left behind
    assert len(rows) == POINTS == len({r["point_id"] for r in rows})
    assert "Pareto front" in capsys.readouterr().out


def test_kill_9_of_a_worker_reruns_its_point_and_the_sweep_completes(sweep, reference,
                                                                     tmp_path):
    out = tmp_path / "worker"
    proc = start(sweep, out)
    try:
        wait_for_rows(proc, out / RESULTS, 2)
        workers = children(proc.pid)
        assert workers
        os.kill(workers[0], signal.SIGKILL)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, err
    pd.testing.assert_frame_equal(table(out), reference)  # all ok: nothing recorded as lost


def test_one_or_two_workers_and_a_second_process_give_identical_tables(sweep, reference,
                                                                       tmp_path):
    """The uninterrupted two-worker run in a fresh interpreter equals the one-worker one."""
    proc = start(sweep, tmp_path)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    pd.testing.assert_frame_equal(table(tmp_path), reference)


def test_a_trace_is_identical_run_to_run_and_process_to_process(tmp_path):
    args = ["run", "--model", "tiny-llama", "--chip", "edge", "--phase", "prefill",
            "--seq", "16", "--functional"]
    traces = [tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"]
    for i, trace in enumerate(traces[:2]):
        assert main([*args, "--out", str(tmp_path / f"r{i}"), "--trace", str(trace)]) == 0
    subprocess.run([sys.executable, "-m", "experiments.cli", *args, "--out",
                    str(tmp_path / "r2"), "--trace", str(traces[2])], check=True,
                   capture_output=True)
    first = traces[0].read_bytes()
    assert json.loads(first)["traceEvents"]
    assert all(t.read_bytes() == first for t in traces[1:])
    outs = [json.loads((tmp_path / f"r{i}" / "result.json").read_text())["headline"]
            for i in range(3)]
    assert outs[0] == outs[1] == outs[2]


BASE = {"model": "tiny-llama", "chip": "edge", "phase": "decode", "batch": 1, "ctx": 32}


def test_random_sampling_is_fixed_by_its_seed_which_every_row_records(tmp_path):
    def spec(seed):
        return sweep_from_dict({"name": "r", "base": BASE, "mode": "random", "samples": 3,
                                "seed": seed, "parameters": {
                                    "chip.core.array.rows": [8, 16, 32, 64],
                                    "chip.core.array.cols": [8, 16, 32, 64]}}, "r.yaml")

    assert spec(7).points() == spec(7).points()
    assert any(spec(s).points() != spec(7).points() for s in (1, 2, 3))
    df = run_sweep(spec(7), tmp_path, workers=1, progress=False)
    assert list(df["seed"]) == [7, 7, 7]


def fake_evaluate(base: dict, point: dict) -> dict:
    """A cheap deterministic stand-in for a simulation (inherited by forked workers)."""
    r, c = point["chip.core.array.rows"], point["chip.core.array.cols"]
    return {"latency_s": 1.0 / (r * c) + 1e-3 * abs(r - c), "energy_j": 1e-3 * (r + c),
            "status": "ok", "error": "", "wall_s": 0.0}


def test_an_optuna_search_does_not_depend_on_the_number_of_workers(tmp_path, monkeypatch):
    """Past NSGA-II's first generation (50 trials), what a trial is asked depends on the
    trials told before it: the batches must not follow the worker count."""
    monkeypatch.setattr("experiments.sweep.runner.evaluate", fake_evaluate)
    values = [8, 12, 16, 24, 32, 48, 64]
    s = sweep_from_dict({"name": "o", "base": BASE, "mode": "optuna", "trials": 60, "seed": 3,
                         "parameters": {"chip.core.array.rows": values,
                                        "chip.core.array.cols": values}}, "o.yaml")
    one = run_sweep(s, tmp_path / "1", workers=1, progress=False)
    three = run_sweep(s, tmp_path / "3", workers=3, progress=False)
    pd.testing.assert_frame_equal(one, three)
    assert len(one) == 60 and set(one["seed"]) == {3}


def test_a_point_over_its_budget_times_out_in_a_pool_and_the_sweep_goes_on(tmp_path):
    s = sweep_from_dict({"name": "t", "base": BASE, "timeout": 1e-6, "parameters": {
        "chip.core.array.rows": [8, 16, 32]}}, "t.yaml")
    df = run_sweep(s, tmp_path, workers=2, progress=False)
    assert list(df["status"]) == ["timeout"] * 3
    assert all("exceeded the 1e-06 s budget" in e for e in df["error"])


def test_tables_are_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
    """A write that dies half-way leaves the previous results.csv as it was."""
    s = sweep_from_dict({"name": "a", "base": BASE, "parameters": {
        "chip.core.array.rows": [8, 16]}}, "a.yaml")
    run_sweep(s, tmp_path, workers=1, progress=False)
    before = (tmp_path / "results.csv").read_bytes()

    def half_then_die(self, path, **kw):  # noqa: ANN001, ARG001
        Path(path).write_text("point_id,chip.core")
        raise KeyboardInterrupt

    monkeypatch.setattr(pd.DataFrame, "to_csv", half_then_die)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(s, tmp_path, workers=1, resume=True, progress=False)
    assert (tmp_path / "results.csv").read_bytes() == before
    assert len(read_results(tmp_path / RESULTS)) == 2
