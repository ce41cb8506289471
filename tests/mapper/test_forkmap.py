"""Tiling confirmations spread over worker processes take the decisions one process takes."""

from __future__ import annotations

from hardware.chips import load_chip
from mapper.layers import Phase
from mapper.lower import lower
from mapper.model import load_model
from mapper.pipeline import MapOptions, map_model
from simulator.run import simulate


def test_parallel_confirmation_decides_as_serial(monkeypatch):
    chip = load_chip("h100")
    graph = map_model(load_model("tiny-llama"), chip, Phase("prefill", 4, seq=64),
                      MapOptions(confirm_top=1)).graph
    shapes = {n.attrs for n in graph.nodes if n.op.value == "linear"}
    assert len(shapes) >= 2  # several GEMMs to decide side by side

    def confirm(programs):  # noqa: ANN001, ANN202
        return simulate(programs, chip, _store=False).time_s
    runs = {}
    for workers in ("1", "2"):
        monkeypatch.setenv("TESSERA_WORKERS", workers)
        runs[workers] = lower(graph, chip, confirm=confirm, top=3)
    assert runs["1"].tilings == runs["2"].tilings
    assert runs["1"].programs == runs["2"].programs


def test_fork_map_keeps_order_and_carries_counts_back(monkeypatch):
    """Results in order, whether forked or not; a worker's counter movements come back once
    (and a serial run's are not counted twice)."""
    from mapper import forkmap

    seen = [0]

    def counters():  # noqa: ANN202
        return (seen[0],)

    def fn(x):  # noqa: ANN001, ANN202
        seen[0] += x
        return x * x
    for workers in ("1", "2"):
        monkeypatch.setenv("TESSERA_WORKERS", workers)
        seen[0] = 0
        added: list[int] = []
        out = forkmap.gathered(forkmap.fork_map(forkmap.counted(fn, counters), [1, 2, 3, 4]),
                               added.extend)
        assert out == [1, 4, 9, 16]
        assert seen[0] + sum(added) == 10


def test_a_bad_worker_count_is_a_one_line_error(monkeypatch, capsys, tmp_path):
    from experiments.cli import main

    for bad in ("two", "-1"):
        monkeypatch.setenv("TESSERA_WORKERS", bad)
        code = main(["run", "--model", "tiny-llama", "--chip", "edge", "--phase", "prefill",
                     "--seq", "8", "--out", str(tmp_path)])
        err = capsys.readouterr().err
        assert code != 0 and "TESSERA_WORKERS: expected a whole number" in err
        assert "Traceback" not in err


def _workers_seen() -> int:
    from mapper import forkmap

    return forkmap.workers()


def test_a_sweep_pool_worker_does_not_fork_again(monkeypatch):
    """A process pool's workers are not daemonic, so each would fork one more worker per
    core; the sweep's pool marks them (``one_process``) and they map pieces themselves."""
    from concurrent.futures import ProcessPoolExecutor

    from mapper.forkmap import one_process

    monkeypatch.setenv("TESSERA_WORKERS", "2")
    with ProcessPoolExecutor(max_workers=1) as pool:
        assert pool.submit(_workers_seen).result() == 2  # unmarked: it would fork
    with ProcessPoolExecutor(max_workers=1, initializer=one_process) as pool:
        assert pool.submit(_workers_seen).result() == 1
