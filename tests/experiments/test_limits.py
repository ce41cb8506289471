"""Limits refused up front with the way to lift them, runaways and deadlocks diagnosed, and
user errors as one located line (a traceback only with --debug) — all through the CLI."""

from __future__ import annotations

import resource
from pathlib import Path

import pytest

from assembler import assemble
from experiments.cli import main
from isa.errors import TesseraError
from simulator.engine.machine import RunLimits
from simulator.errors import BudgetError
from simulator.run import simulate
from simulator.tracesize import trace_events
from tests.experiments.helpers import one_line_error, run
from tests.simulator.conftest import make_chip

PRESETS = Path(__file__).parents[2] / "hardware" / "presets" / "chips"
EXAMPLES = Path(__file__).parents[2] / "examples"
TIB = "1 TiB"


def edge_with(tmp_path: Path, old: str, new: str) -> Path:
    text = (PRESETS / "edge.yaml").read_text()
    assert old in text
    path = tmp_path / "big.yaml"
    path.write_text(text.replace(old, new))
    return path


def asm(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "p.s"
    path.write_text(text)
    return path


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- memory in functional mode ---------------------------------------------------------------

def test_a_1_tib_sram_is_refused_before_allocation(capsys, tmp_path):
    chip = edge_with(tmp_path, "capacity: 512 KiB", f"capacity: {TIB}")
    before = peak_rss_mib()
    code, _, err = run(capsys, "sim", str(EXAMPLES / "softmax_rows.s"), "--chip", str(chip),
                       "--functional")
    one_line_error(code, err, "SRAM of 1048576 MiB exceeds the 8192 MiB",
                   "raise --memory-limit")
    assert peak_rss_mib() - before < 512  # nothing near a TiB (or the 8 GiB limit) touched
    code, _, err = run(capsys, "run", "--model", "tiny-llama", "--chip", str(chip),
                       "--functional", "--ctx", "16", "--out", str(tmp_path / "r"))
    one_line_error(code, err, "exceeds the 8192 MiB", "raise --memory-limit")


def test_memory_limit_is_a_flag_of_run_too(capsys, tmp_path):
    code, _, err = run(capsys, "run", "--model", "tiny-llama", "--chip", "edge", "--ctx", "32",
                       "--functional", "--memory-limit", str(64 << 10),
                       "--out", str(tmp_path))
    one_line_error(code, err, "SRAM of 0 MiB exceeds the 0 MiB left", "raise --memory-limit")


def test_a_1_tib_hbm_is_paged_not_allocated(capsys, tmp_path):
    chip = edge_with(tmp_path, "capacity: 8 GiB", f"capacity: {TIB}")
    before = peak_rss_mib()
    code, out, _ = run(capsys, "sim", str(EXAMPLES / "softmax_rows.s"), "--chip", str(chip),
                       "--functional")
    assert code == 0 and "softmax_rows.s" in out
    assert peak_rss_mib() - before < 512


# -- sweep size ------------------------------------------------------------------------------

def sweep_file(tmp_path: Path, parameters: str, extra: str = "") -> Path:
    path = tmp_path / "s.yaml"
    path.write_text("name: s\nbase: {model: tiny-llama, chip: edge}\n"
                    f"parameters:\n{parameters}{extra}")
    return path


def test_a_grid_of_10_to_the_12_points_is_refused_without_building_it(capsys, tmp_path):
    axes = "".join(f"  chip.x{i}: {{linear: [1, 2], count: 1000}}\n" for i in range(4))
    code, _, err = run(capsys, "sweep", str(sweep_file(tmp_path, axes)), "--out",
                       str(tmp_path / "o"))
    one_line_error(code, err, "s.yaml: parameters: 1,000,000,000,000 points exceed the limit "
                   "of 100,000", "raise max_points: in the sweep file")
    assert not (tmp_path / "o").exists()


def test_a_range_of_10_to_the_12_values_is_refused_before_its_values_exist(capsys, tmp_path):
    axis = "  chip.hbm.bandwidth: {log: [10 GB/s, 1 TB/s], count: 1000000000000}\n"
    code, _, err = run(capsys, "sweep", str(sweep_file(tmp_path, axis)))
    one_line_error(code, err, "parameters.chip.hbm.bandwidth: count 1,000,000,000,000 "
                   "exceeds the limit of 100,000", "raise max_points:")


def test_random_samples_over_the_limit_and_max_points_lifts_it(capsys, tmp_path):
    axis = "  chip.core.array.rows: [8, 16]\n"
    code, _, err = run(capsys, "sweep", str(sweep_file(
        tmp_path, axis, "mode: random\nsamples: 1000000000000\n")))
    one_line_error(code, err, "s.yaml: samples: 1,000,000,000,000 points exceed")
    from experiments.sweep.spec import load_sweep

    axes = "".join(f"  chip.{path}: {{linear: [1, 2], count: 400}}\n"
                   for path in ("clock_hz", "energy.static_w"))
    assert load_sweep(sweep_file(tmp_path, axes, "max_points: 160000\n")).size() == 160_000
    code, _, err = run(capsys, "sweep", str(sweep_file(tmp_path, axes, "max_points: 0\n")))
    one_line_error(code, err, "s.yaml: max_points: expected a positive integer")


# -- trace size ------------------------------------------------------------------------------

RUNAWAY = """; a billion matrix multiplies
    loop 1000000000, done
    mm acc[0], sram[0], sram[0], 16, 16, 16, bf16, bf16
done:
    halt
"""


def test_a_trace_of_10_to_the_9_events_is_refused_up_front(capsys, tmp_path):
    trace = tmp_path / "t.json"
    code, _, err = run(capsys, "sim", str(asm(tmp_path, RUNAWAY)), "--trace", str(trace))
    one_line_error(code, err, "up to 1,000,000,000 trace events, over the limit of "
                   "5,000,000", "raise --max-trace-events")
    assert not trace.exists()


def test_run_trace_limit_and_its_flag(capsys, tmp_path):
    args = ("run", "--model", "tiny-llama", "--chip", "edge", "--ctx", "32",
            "--out", str(tmp_path), "--trace", str(tmp_path / "t.json"))
    code, _, err = run(capsys, *args, "--max-trace-events", "10")
    one_line_error(code, err, "over the limit of 10", "raise --max-trace-events")
    code, _, _ = run(capsys, *args)
    assert code == 0 and (tmp_path / "t.json").exists()


def test_trace_estimate_is_exact_without_an_early_halt():
    program = assemble("""
    loop 3, outer
    dma.load sram[0], hbm[0], bf16, 4, 4
    sem.signal dma, 0
    loop 5, inner
    sem.wait mx, 0
    mm acc[0], sram[0], sram[0], 4, 4, 4, bf16, bf16
    sem.signal mx, 0
inner:
    v.add sram[64], sram[64], sram[64], 1, 4, bf16, bf16, bf16
outer:
    halt
""")
    r = simulate(program, make_chip(), trace=True)
    assert trace_events(program) == len(r.trace) == 3 * (1 + 5 + 1)


# -- runaways and deadlocks ------------------------------------------------------------------

def test_a_program_that_never_ends_stops_at_the_instruction_budget(capsys, tmp_path):
    code, _, err = run(capsys, "sim", str(asm(tmp_path, RUNAWAY)),
                       "--max-instructions", "1000")
    one_line_error(code, err, "instruction budget of 1,000 reached at chip 0 core 0 pc 1 (mm)",
                   "raise --max-instructions")


def test_a_program_that_never_ends_stops_at_the_time_budget(capsys, tmp_path):
    code, _, err = run(capsys, "sim", str(asm(tmp_path, RUNAWAY)), "--max-time", "1e-6")
    one_line_error(code, err, "simulated-time budget of 1e-06 s reached at", "(mm)",
                   "raise --max-time")


def test_engines_waiting_for_each_other_are_a_diagnosed_deadlock(capsys, tmp_path):
    code, _, err = run(capsys, "sim", str(asm(tmp_path, """
    sem.wait mx, 1
    sem.signal mx, 2
    sem.wait vec, 2
    sem.signal vec, 1
    halt
""")))
    one_line_error(code, err, "deadlock at t=0 ns", "pc 0 (sem.wait) on mx: waits for "
                   "semaphore 1", "pc 2 (sem.wait) on vec: waits for semaphore 2")


def test_a_loop_of_only_semaphore_operations_hits_the_instruction_budget():
    program = assemble("""
    loop 20000, done
    sem.signal dma, 0
    sem.wait dma, 0
done:
    halt
""")
    with pytest.raises(BudgetError, match="instruction budget of 1,000"):
        simulate(program, make_chip(), limits=RunLimits(max_instructions=1000))


# -- errors a person can act on --------------------------------------------------------------

def test_errors_are_located_and_debug_shows_the_traceback(capsys, tmp_path):
    bad = asm(tmp_path, "  nop\n  dma.load sram[0], hbm[0], bf16, 4\n")
    code, _, err = run(capsys, "sim", str(bad))
    first, source, caret = err.splitlines()  # the assembler also shows the line, with a caret
    assert code == 1 and first.startswith(f"tessera sim: error: {bad}:2:3: dma.load: missing "
                                          "operand 'cols'")
    assert source == "  dma.load sram[0], hbm[0], bf16, 4" and caret == "  ^"
    with pytest.raises(TesseraError, match=f"{bad}:2:3"):
        main(["--debug", "sim", str(bad)])
    chip = tmp_path / "c.yaml"
    chip.write_text("name: c\nclock_hz: 1 GHz\ncores: two\n")
    with pytest.raises(TesseraError, match="c.yaml: cores"):
        main(["--debug", "sim", str(EXAMPLES / "softmax_rows.s"), "--chip", str(chip)])


def test_sweep_file_errors_name_the_file_and_field(capsys, tmp_path):
    code, _, err = run(capsys, "sweep", str(sweep_file(tmp_path, "  chip.rows: oops\n")))
    one_line_error(code, err, "tessera sweep: error: s.yaml: parameters.chip.rows: expected "
                   "a list of values")
    code, _, err = run(capsys, "sweep", str(tmp_path / "missing.yaml"))
    one_line_error(code, err, "missing.yaml")


@pytest.mark.parametrize("flag", ["--max-time", "--max-instructions", "--memory-limit",
                                  "--max-trace-events"])
def test_run_budget_flags_must_be_positive(capsys, flag):
    code, _, err = run(capsys, "run", "--model", "tiny-llama", "--chip", "edge", flag, "0")
    one_line_error(code, err, f"{flag} must be positive, got 0")
