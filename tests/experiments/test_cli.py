"""One end-to-end test per CLI command, and user mistakes as one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.experiments.helpers import run

EXAMPLES = Path(__file__).parents[2] / "examples"


def test_isa_prints_the_table(capsys):
    code, out, _ = run(capsys, "isa")
    assert code == 0 and "dma.load" in out and "v.softmax" in out


def test_asm_disasm_round_trip(capsys, tmp_path):
    binary = tmp_path / "g.bin"
    code, out, _ = run(capsys, "asm", str(EXAMPLES / "gemm_tiled.s"), "-o", str(binary))
    assert code == 0 and binary.stat().st_size > 0
    text = tmp_path / "g.s"
    assert run(capsys, "disasm", str(binary), "-o", str(text))[0] == 0
    again = tmp_path / "g2.bin"
    assert run(capsys, "asm", str(text), "-o", str(again))[0] == 0
    assert again.read_bytes() == binary.read_bytes()


def test_asm_errors_are_located_and_exit_nonzero(capsys, tmp_path):
    src = tmp_path / "bad.s"
    src.write_text("  nop\n  mm acc[0], hbm[0], sram[0], 1, 1, 1, bf16, bf16\n")
    code, _, err = run(capsys, "asm", str(src))
    assert code == 1 and f"{src}:2:14: operand 'a': must be in sram, not hbm" in err
    assert "Traceback" not in err


def test_disasm_of_a_foreign_file(capsys, tmp_path):
    f = tmp_path / "x.bin"
    f.write_bytes(b"hello world, not a program")
    code, _, err = run(capsys, "disasm", str(f))
    assert code == 1 and err.count("\n") == 1 and "not a Tessera binary" in err


def test_sim_writes_results_and_trace(capsys, tmp_path):
    out, trace = tmp_path / "r.json", tmp_path / "t.json"
    code, text, _ = run(capsys, "sim", str(EXAMPLES / "softmax_rows.s"), "--chip", "edge",
                        "--functional", "--out", str(out), "--trace", str(trace), "--json")
    assert code == 0 and "softmax_rows.s on edge" in text
    assert json.loads(out.read_text())["time_s"] > 0
    events = json.loads(trace.read_text())["traceEvents"]
    assert any(e.get("name") == "v.softmax" for e in events)
    assert json.loads(text.strip().splitlines()[-1])["latency_s"] > 0


def test_sim_bad_chip_file(capsys, tmp_path):
    chip = tmp_path / "c.yaml"
    chip.write_text("name: c\ncores: two\n")
    code, _, err = run(capsys, "sim", str(EXAMPLES / "softmax_rows.s"), "--chip", str(chip))
    assert code == 1 and "c.yaml: clock_hz: missing required field" in err
    assert err.count("\n") == 1


def test_sim_deadlock_is_diagnosed(capsys, tmp_path):
    src = tmp_path / "dead.s"
    src.write_text("  sem.wait mx, 3\n  halt\n")
    code, _, err = run(capsys, "sim", str(src), "--chip", "edge")
    assert code == 1 and "deadlock" in err and "pc 0 (sem.wait) on mx" in err


def test_run_prints_summary_and_json(capsys, tmp_path):
    code, out, _ = run(capsys, "run", "--model", "tiny-llama", "--chip", "edge", "--phase",
                       "generate", "--batch", "2", "--seq", "16", "--tokens", "4",
                       "--out", str(tmp_path), "--json")
    assert code == 0
    head = json.loads(out.strip().splitlines()[-1])
    assert {"latency_s", "energy_j", "ttft_s", "tpot_s", "tokens_per_s"} <= set(head)
    assert head["latency_s"] == pytest.approx(head["ttft_s"] + 4 * head["tpot_s"])
    doc = json.loads((tmp_path / "result.json").read_text())
    assert {k: head[k] for k in doc["headline"]} == doc["headline"]
    assert (tmp_path / "phases.csv").exists()
    # the interval fields (or validated: false) are in --json and in the notes alike
    assert head["validated"] == doc["notes"]["uncertainty"]["validated"]


def test_run_bad_model_name(capsys):
    code, _, err = run(capsys, "run", "--model", "llama9", "--chip", "edge")
    assert code == 1 and "unknown model preset 'llama9'" in err and err.count("\n") == 1


def test_run_bad_option_value(capsys):
    code, _, err = run(capsys, "run", "--model", "tiny-llama", "--chip", "edge", "--batch", "0")
    assert code == 1 and "--batch must be at least 1" in err


def test_run_emit_asm_assembles_back_to_the_same_programs(capsys, tmp_path):
    from assembler import assemble_file
    from hardware.chips import load_chip
    from isa.encoding import encode
    from mapper.layers import Phase
    from mapper.model import load_model
    from mapper.pipeline import map_model
    from simulator.run import simulate

    asm = tmp_path / "asm"
    code, _, _ = run(capsys, "run", "--model", "tiny-llama", "--chip", "edge", "--phase",
                     "decode", "--ctx", "8", "--out", str(tmp_path), "--emit-asm", str(asm))
    assert code == 0
    files = sorted(asm.glob("decode_core*.s"))
    assert len(files) == load_chip("edge").cores
    chip, model = load_chip("edge"), load_model("tiny-llama")
    mapped = map_model(model, chip, Phase("decode", 1, ctx=8),
                       confirm=lambda p: simulate(p, chip).time_s)
    for core, f in enumerate(files):
        assert encode(assemble_file(f).instructions) == \
            encode(mapped.lowered.programs[core].instructions)


def test_run_reports_what_compression_changes(capsys, tmp_path):
    code, out, _ = run(capsys, "run", "--model", "tiny-llama", "--chip", "edge", "--phase",
                       "prefill", "--seq", "16", "--batch", "2", "--functional",
                       "--quant", "int8", "--out", str(tmp_path))
    assert code == 0 and "compression vs uncompressed" in out and "output error" in out
    comp = json.loads((tmp_path / "result.json").read_text())["notes"]["compression"]
    assert comp["weight_bytes"] * 2 == comp["weight_bytes_baseline"]
    assert 0 < comp["output_error"] < 0.05


def test_run_on_a_system_with_tensor_parallelism(capsys, tmp_path):
    code, out, _ = run(capsys, "run", "--model", "tiny-llama", "--system", "h200x2", "--tp",
                       "2", "--phase", "decode", "--ctx", "16", "--out", str(tmp_path),
                       "--json")
    assert code == 0 and json.loads(out.strip().splitlines()[-1])["latency_s"] > 0


def test_run_parallel_degrees_must_match_the_system(capsys):
    code, _, err = run(capsys, "run", "--model", "tiny-llama", "--system", "h200x2", "--tp",
                       "4")
    assert code == 1 and "= 4 chips, but the system has 2" in err
    code, _, err = run(capsys, "run", "--model", "tiny-llama", "--chip", "edge", "--tp", "2")
    assert code == 1 and "need a multi-chip --system" in err


def test_study_runs_a_bundled_sweep_and_writes_its_report(capsys, tmp_path):
    code, out, _ = run(capsys, "study", "quickstart", "--out", str(tmp_path), "--workers", "2")
    assert code == 0 and "6 ok" in out
    assert (tmp_path / "report" / "index.html").exists()
    code, _, err = run(capsys, "study", "nosuch")
    assert code == 1 and "unknown study 'nosuch'" in err
