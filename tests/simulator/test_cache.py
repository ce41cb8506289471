"""The kernel-cost cache: a hit is the simulation's own result; nothing stale, nothing torn."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from experiments.cli import main
from hardware.chips import load_chip
from mapper.layers import Phase
from mapper.model import load_model
from mapper.pipeline import MapOptions, map_model
from simulator import cache
from simulator.engine.machine import RunLimits
from simulator.run import simulate

ROOT = Path(__file__).parents[2]


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.ENV_DIR, str(tmp_path / "c"))
    monkeypatch.delenv(cache.ENV_OFF, raising=False)
    return tmp_path / "c"


@pytest.fixture(scope="module")
def kernels():
    chip = load_chip("edge")
    m = map_model(load_model("tiny-llama"), chip, Phase("prefill", 2, seq=16),
                  MapOptions(confirm_top=1))
    return chip, m.lowered.kernel_programs


def test_a_hit_is_the_simulation_itself(folder, kernels):
    chip, ks = kernels
    fresh = [simulate(k, chip, _store=False) for k in ks]
    first = [simulate(k, chip) for k in ks]
    store = cache.current()
    before = store.stats.hits
    again = [simulate(k, chip) for k in ks]
    assert store.stats.hits - before == len(ks)
    for a, b, c in zip(fresh, first, again):
        assert cache.to_json(a) == cache.to_json(b) == cache.to_json(c)
    # a new process (an empty memory) reads the same from disk
    assert cache.CostCache(folder).info()["entries"] >= len({cache.key(
        "chip", chip, {(0, c): p for c, p in k.items()}, (RunLimits(), True)) for k in ks})


def test_a_changed_chip_limit_or_code_is_a_miss(folder, kernels, monkeypatch):
    chip, ks = kernels
    k = ks[0]
    simulate(k, chip)
    store = cache.current()
    misses = store.stats.misses
    faster = dataclasses.replace(chip, clock_hz=2 * chip.clock_hz)
    assert simulate(k, faster).time_s < simulate(k, chip).time_s
    simulate(k, chip, limits=RunLimits(max_time_s=100.0))
    monkeypatch.setattr(cache, "code_digest", lambda: "edited")
    simulate(k, chip)
    assert store.stats.misses - misses == 3


def test_traced_functional_and_disabled_runs_are_not_cached(folder, kernels, monkeypatch):
    chip, ks = kernels
    simulate(ks[1], chip, trace=True)
    monkeypatch.setenv(cache.ENV_OFF, "1")
    simulate(ks[1], chip)
    assert not (folder / cache.FILE).exists() or cache.CostCache(folder).info()["entries"] == 0


WRITER = """
import sys, time
from simulator.cache import CostCache
from simulator.result import EngineStats, SimResult
store = CostCache(__import__("pathlib").Path(sys.argv[1]))
r = SimResult("c", 1.0, 1.0, 1e9, 1e9, False, 1, 0.0, 0.0, 0.0, {{"hbm_read": 1.0}},
              {{"hbm": 1.0}}, {{"mx": EngineStats(1.0, 0.5, 3)}})
for i in range({n}):
    store.put(f"{{sys.argv[2]}}-{{i}}", r)
print("done", flush=True)
"""


def _writer(folder: Path, tag: str, n: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WRITER.format(n=n), str(folder), tag],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True)


def test_concurrent_writers_and_a_killed_one_leave_a_sound_cache(tmp_path):
    folder = tmp_path / "c"
    a, b = _writer(folder, "a", 300), _writer(folder, "b", 300)
    killed = _writer(folder, "k", 100000)
    time.sleep(1.5)
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait()
    assert a.wait(60) == 0 and b.wait(60) == 0
    db = sqlite3.connect(folder / cache.FILE)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    rows = db.execute("SELECT key, value FROM costs").fetchall()
    assert {k for k, _ in rows} >= {f"{t}-{i}" for t in "ab" for i in range(300)}
    for _, value in rows:  # every entry whole, the killed writer's included
        assert cache.from_json(value).engines["mx"].instructions == 3


def test_cache_info_and_clear_on_the_command_line(tmp_path, capsys, kernels):
    chip, ks = kernels
    folder = tmp_path / "cli"
    assert main(["run", "--model", "tiny-llama", "--chip", "edge", "--ctx", "8", "--out",
                 str(tmp_path / "r"), "--cache-dir", str(folder)]) == 0
    def reuse(out: str) -> tuple[int, int]:
        line = next(x for x in out.splitlines() if "kernel-cost" in x)
        return tuple(int(v) for v in line.split(": ")[1].split(" simulations")[0].split(" of "))
    reused, seen = reuse(capsys.readouterr().out)
    assert seen > reused  # (a kernel met twice in one run, at other addresses, is reused)
    simulated = seen - reused
    assert main(["run", "--model", "tiny-llama", "--chip", "edge", "--ctx", "8", "--out",
                 str(tmp_path / "r"), "--cache-dir", str(folder)]) == 0
    reused, total = reuse(capsys.readouterr().out)
    assert reused == total > 0  # (fewer than before: remembered tilings need no confirming)
    assert main(["cache", "info", "--json", "--cache-dir", str(folder)]) == 0
    total = json.loads(capsys.readouterr().out)["entries"]
    assert total == simulated
    assert main(["cache", "clear", "--cache-dir", str(folder)]) == 0
    assert f"cleared {total}" in capsys.readouterr().out


def test_a_kernel_at_other_addresses_is_the_same_simulation(folder):
    """The key leaves addresses out (timing never depends on one) but keeps the L2 hit
    fraction the reuse model finds from them: a GEMM moved elsewhere in HBM is a hit, and
    the cost it returns is the moved GEMM's own."""
    from isa import DType
    from mapper.graph import Graph, Kind, Tensor
    from mapper.lower import lower

    chip = load_chip("h100")

    def gemm(pad: int, same_w: bool = False):  # noqa: ANN202
        g = Graph()
        g.add(Tensor("pad", (pad, 64), DType.BF16, Kind.INPUT))
        g.add(Tensor("x", (512, 1024), DType.BF16, Kind.INPUT))
        g.add(Tensor("w", (1024, 1024), DType.BF16, Kind.WEIGHT))
        g.add(Tensor("y", (512, 1024), DType.BF16))
        g.op("linear", "lin", ["x", "w"], ["y"], bias=False)
        return lower(g, chip).kernel_programs[0]
    store = cache.current()
    before = store.stats.hits
    first = simulate(gemm(8), chip)
    assert store.stats.hits == before
    moved = simulate(gemm(4096), chip)  # every address 0.5 MiB further
    assert store.stats.hits == before + 1 and moved == first
    fresh = simulate(gemm(4096), chip, limits=RunLimits(steady_state=False), _store=False)
    assert fresh.time_s == pytest.approx(first.time_s, rel=1e-9)


def test_remembered_tilings_lower_the_same_programs_without_simulating(folder, monkeypatch):
    from experiments.run import confirmer
    from mapper.lower import lower

    monkeypatch.setenv("TESSERA_WORKERS", "1")  # count the confirmations in this process

    chip = load_chip("h100")
    graph = map_model(load_model("tiny-llama"), chip, Phase("prefill", 4, seq=64),
                      MapOptions(confirm_top=1)).graph
    calls = []
    first = confirmer(chip)

    def counting(programs):  # noqa: ANN001
        calls.append(1)
        return first(programs)
    counting.memo = first.memo
    a = lower(graph, chip, confirm=counting, top=3)
    n = len(calls)
    b = lower(graph, chip, confirm=counting, top=3)
    assert n > 0 and len(calls) == n  # the second lowering took every decision from memory
    assert a.tilings == b.tilings and a.programs == b.programs
    plain = lower(graph, chip, confirm=lambda p: simulate(p, chip, _store=False).time_s, top=3)
    assert plain.tilings == a.tilings  # the same decisions a fresh confirmation takes


def test_validate_reuses_the_cache_and_says_so(tmp_path, capsys):
    """A row asked again is answered whole from the cache, with the same figures; a row
    whose target changed (here its instruction budget) is priced again from the kernels."""
    csv = tmp_path / "gemm.csv"
    csv.write_text("dtype,M,K,N,ms\nbf16,64,256,256,0.01\nbf16,64,256,256,0.02\n")
    args = ["validate", "h100", str(csv), "--json", "--cache-dir", str(tmp_path / "c")]
    assert main(args) == 0
    out = capsys.readouterr().out.splitlines()
    assert "kernel-cost cache:" in out[-2] and json.loads(out[-1])["cases"] == 2
    first = json.loads(out[-1])
    assert main(args) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-2] == "kernel-cost cache: nothing simulated; 2 whole answers reused"
    assert json.loads(out[-1]) == first
    assert main(args + ["--max-instructions", "19999999"]) == 0
    out = capsys.readouterr().out.splitlines()
    reused, total = (int(v) for v in
                     out[-2].split(": ")[1].split(" simulations")[0].split(" of "))
    assert reused == total > 0 and "answers" not in out[-2]
    assert json.loads(out[-1]) == first


def test_a_damaged_entry_or_file_is_a_miss_not_a_traceback(folder, kernels):
    chip, ks = kernels
    want = simulate(ks[0], chip, _store=False)
    simulate(ks[0], chip)
    db = sqlite3.connect(folder / cache.FILE)
    db.execute("UPDATE costs SET value = '{not json'")
    db.commit()
    cache.current().memory.clear()
    assert cache.to_json(simulate(ks[0], chip)) == cache.to_json(want)  # simulated again
    (folder / cache.FILE).write_bytes(b"this is not a database")
    for extra in folder.glob(cache.FILE + "-*"):
        extra.unlink()
    fresh = cache.CostCache(folder)
    assert fresh.get("anything") is None and fresh.info()["folder"] is None  # memory only


def test_every_cores_bounds_are_checked_cached_or_not(folder):
    """Cores that differ only in addresses are simulated once (dedupe), yet each core's
    program is checked against its memories: an out-of-range address on the second core is
    an error with the cache and without, in a loop too (its register's range counts);
    programs in bounds reuse the cached result."""
    from isa import DType, MemRef, Program, Space, build
    from simulator.errors import SimError
    from tests.simulator.conftest import make_chip

    chip = make_chip(cores=2)

    def core(sram_addr: int) -> Program:
        return Program((build("dma.load", MemRef(Space.SRAM, sram_addr), MemRef(Space.HBM, 0),
                              DType.BF16, 64, 64), build("halt")))
    bad = {0: core(0), 1: core(chip.core.sram.capacity - 4096)}
    for store in (False, True):
        with pytest.raises(SimError, match="reaches sram"):
            simulate(bad, chip, _store=store)

    def looped(hbm_addr: int) -> Program:  # 4 loads stepping a0 by 1 MiB through HBM
        return Program((build("loop", 4, 2, "a0", 1 << 20),
                        build("dma.load", MemRef(Space.SRAM, 0), MemRef(Space.HBM, hbm_addr, 0),
                              DType.BF16, 64, 64), build("halt")))
    edge = chip.hbm.capacity - 3 * (1 << 20) - 8192
    simulate({0: looped(0), 1: looped(edge)}, chip, _store=False)  # the last load just fits
    with pytest.raises(SimError, match=r"with a0 in 0\.\.3145728"):
        simulate({0: looped(0), 1: looped(edge + 64)}, chip, _store=False)
    good = {0: core(0), 1: core(8192)}
    first = simulate(good, chip)
    hits = cache.current().stats.hits
    assert cache.to_json(simulate(good, chip)) == cache.to_json(first)
    assert cache.current().stats.hits == hits + 1


def test_a_row_naming_a_model_file_is_asked_again_when_the_file_changes(tmp_path, capsys):
    """A whole answer's key holds the bytes of a model file the row names, so editing the
    file is never answered from before."""
    import yaml

    from mapper.model import PRESETS

    spec = yaml.safe_load((PRESETS / "tiny-llama.yaml").read_text())
    model = tmp_path / "mine.yaml"
    model.write_text(yaml.safe_dump(spec))
    csv = tmp_path / "layers.csv"
    csv.write_text(f"model,phase,B,S,ctx,ms_per_layer\n{model},decode,1,1,64,0.01\n")
    args = ["validate", "h100", str(csv), "--json", "--cache-dir", str(tmp_path / "c")]
    assert main(args) == 0 and main(args) == 0
    assert capsys.readouterr().out.splitlines()[-2].endswith("1 whole answers reused")
    model.write_text(yaml.safe_dump({**spec, "ffn": 2 * spec["ffn"]}))
    assert main(args) == 0
    assert "answers" not in capsys.readouterr().out.splitlines()[-2]
