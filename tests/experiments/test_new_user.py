"""What a new user tripped on: result scopes, memory that does not fit, runs refused up front,
sweeps checked at load, fronts per scenario, report details, messages and the README."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pandas as pd
import pytest

from experiments.cli import main
from experiments.run import run_model
from experiments.sweep.evaluate import evaluate
from experiments.sweep.runner import pareto
from experiments.sweep.spec import SweepError, load_sweep, sweep_from_dict
from hardware.chips import list_presets, load_chip
from mapper.footprint import (
    ContextError,
    MemoryFitError,
    check_context,
    footprint,
    largest_batch,
)
from mapper.layers import Phase
from mapper.model import list_models, load_model
from mapper.pipeline import MapOptions
from tests.experiments.helpers import one_line_error, run

ROOT = Path(__file__).parents[2]


# ---- 1. every column of a sweep row covers the same scope ----------------------------------

@pytest.mark.parametrize("phase", ["decode", "generate"])
def test_sweep_row_bytes_match_energy_over_one_scope(phase):
    row = evaluate({"model": "tiny-llama", "chip": "edge", "phase": phase, "seq": 8, "ctx": 8,
                    "tokens": 3}, {})
    assert row["status"] == "ok", row["error"]
    pj = load_chip("edge").energy.hbm_pj_per_byte
    assert row["hbm_bytes"] * pj * 1e-12 == pytest.approx(row["energy_hbm_j"], rel=1e-9)
    parts = sum(v for k, v in row.items() if re.fullmatch(r"energy_(?!per_)\w+_j", k)
                and k != "energy_j")
    assert parts == pytest.approx(row["energy_j"], rel=1e-9)
    assert row["scope"] == ("one decode step (all sequences)" if phase == "decode"
                            else "prefill + 3 decode steps")


# ---- 2. memory per chip, checked before mapping ----------------------------------------------

def test_a_kv_cache_larger_than_hbm_is_refused_with_the_largest_batch():
    model, chip = load_model("llama2-7b"), load_chip("h100")
    with pytest.raises(MemoryFitError) as info:
        run_model(model, chip, "decode", 64, 512, 4096, 1, MapOptions())
    text = str(info.value)
    assert "KV cache 137.4" in text and "80.00 GB" in text and "--batch 30" in text
    phase = Phase("decode", 30, ctx=4096)
    cap = chip.hbm.capacity
    assert largest_batch(model, phase, MapOptions(), cap) == 30
    assert footprint(model, phase, MapOptions()).total <= cap
    assert footprint(model, Phase("decode", 31, ctx=4096), MapOptions()).total > cap


def test_weights_larger_than_hbm_are_refused_and_quantization_counts():
    model = load_model("gpt3-175b")
    fp = footprint(model, Phase("decode", 1, ctx=1024), MapOptions())
    assert 340e9 < fp.weights < 360e9  # 175 B parameters in bf16
    int4 = footprint(model, Phase("decode", 1, ctx=1024), MapOptions(quant="int4"))
    assert int4.weights < fp.weights / 3
    with pytest.raises(MemoryFitError, match="not even batch 1 fits"):
        run_model(model, load_chip("h100"), "decode", 1, 512, 1024, 1, MapOptions())


def test_tensor_parallel_splits_the_footprint():
    model = load_model("llama3-70b")
    one = footprint(model, Phase("decode", 8, ctx=2048), MapOptions())
    four = footprint(model, Phase("decode", 8, ctx=2048), MapOptions(), tp=4)
    assert four.kv_cache == pytest.approx(one.kv_cache / 4, rel=0.01)
    assert four.weights < one.weights / 3


def test_context_beyond_the_positions_warns_or_refuses():
    assert "4,096 (max_seq)" in check_context(load_model("llama2-7b"), "decode", 1, 8192, 1)
    assert check_context(load_model("llama2-7b"), "decode", 1, 4095, 1) is None
    with pytest.raises(ContextError, match="--allow-long-context"):
        check_context(load_model("gpt3-175b"), "prefill", 4096, 0, 1)
    assert check_context(load_model("gpt3-175b"), "prefill", 4096, 0, 1, allow=True)


def test_cli_prints_the_breakdown_in_one_line(capsys, tmp_path):
    code, _, err = run(capsys, "run", "--model", "llama2-7b", "--chip", "h100", "--phase",
                       "decode", "--batch", "64", "--ctx", "4096", "--out", str(tmp_path))
    one_line_error(code, err, "weights 13.48 GB", "KV cache", "largest batch that fits")
    code, _, err = run(capsys, "run", "--model", "llama2-7b", "--chip", "h100",
                       "--phase", "decode", "--ctx", "8000", "--batch", "1", "--out",
                       str(tmp_path / "w"))
    assert code == 0 and "warning" in err and "max_seq" in err


def test_a_sweep_point_that_does_not_fit_is_a_failed_row():
    row = evaluate({"model": "llama2-7b", "chip": "h100", "phase": "decode", "batch": 64,
                    "ctx": 4096}, {})
    assert row["status"] == "failed" and "largest batch that fits" in row["error"]


# ---- 3. huge inputs are refused within a second ------------------------------------------------

@pytest.mark.parametrize("args", [
    ("--model", "llama2-7b", "--phase", "prefill", "--seq", "10000000"),
    ("--model", "llama2-7b", "--phase", "decode", "--batch", "100000"),
    ("--model", "llama2-7b", "--phase", "decode", "--ctx", "10000000"),
    ("--model", "tiny-llama", "--phase", "prefill", "--seq", "1000000"),  # fits: work refused
])
def test_huge_runs_are_refused_within_a_second(capsys, tmp_path, args):
    t0 = time.perf_counter()
    code, _, err = run(capsys, "run", "--chip", "h100", *args, "--out", str(tmp_path))
    assert time.perf_counter() - t0 < 1.0
    one_line_error(code, err)  # the refusal alone: no warning for a run that does not go ahead
    assert any(fix in err for fix in ("--batch", "--seq", "--ctx", "--max-instructions"))


# ---- 4. validate: a row the model cannot map is skipped, the file goes on -------------------

def test_validate_skips_a_row_that_cannot_map(capsys, tmp_path):
    csv = tmp_path / "attention.csv"
    csv.write_text("phase,B,Hq,Hkv,Sq,Skv,D,causal,ms\nprefill,1,1,1,128,128,16384,True,0.05\n"
                   "prefill,1,1,1,128,128,128,True,0.01\n")
    out = tmp_path / "pred.csv"
    code, _, err = run(capsys, "validate", "h100", str(csv), "--out", str(out))
    assert code == 0, err
    df = pd.read_csv(out)
    assert "no attention tile fits" in df["skipped"][0] and "row 2" in df["skipped"][0]
    assert df["skipped"].isna()[1] and df["predicted"][1] > 0


def test_rows_wider_than_the_sram_are_streamed_not_skipped(capsys, tmp_path):
    csv = tmp_path / "vector.csv"
    csv.write_text("op,T,H,ms\nlayernorm,4,131072,0.05\nadd,4,131072,0.02\n")
    out = tmp_path / "pred.csv"
    code, _, err = run(capsys, "validate", "h100", str(csv), "--out", str(out))
    assert code == 0, err
    df = pd.read_csv(out)  # the norm streams its rows in chunks, the add in column blocks
    assert df["skipped"].isna().all() and (df["predicted"] > 0).all()


# ---- 5. sweeps: paths and values checked at load, all-failed exits 1 ------------------------

@pytest.mark.parametrize("params,expect", [
    ({"chip.core.aray.rows": [64]}, "'aray' is not one of: array"),
    ({"mapping.quant": ["int3"]}, "expected one of null, int8"),
    ({"mapping.quantt": ["int8"]}, "unknown path 'mapping.quantt'"),
    ({"system.link.bw": [1]}, "unknown path 'system.link.bw'"),
    ({"phase": ["fly"]}, "expected one of prefill, decode, generate, train"),
    ({"model": ["llama9"]}, "unknown model preset 'llama9'"),
    ({"chip.hbm.bandwidth": ["fast"]}, "chip.hbm.bandwidth = 'fast'"),
])
def test_sweep_paths_and_values_are_checked_at_load(params, expect):
    with pytest.raises(SweepError, match=re.escape(expect)):
        sweep_from_dict({"base": {"model": "tiny-llama", "chip": "edge"},
                         "parameters": params}, "s.yaml")


def test_a_sweep_whose_every_point_failed_exits_nonzero(capsys, tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text("base: {model: llama2-7b, chip: h100, phase: decode, batch: 64, "
                    "ctx: 4096}\nparameters:\n  mapping.fusion: [true, false]\n")
    code, _, err = run(capsys, "sweep", str(spec), "--out", str(tmp_path / "o"), "--workers",
                       "1", "--no-progress")
    assert code == 1 and "every point failed" in err and "largest batch" in err


# ---- 6. one Pareto front per scenario ------------------------------------------------------

def test_pareto_fronts_are_per_phase():
    df = pd.DataFrame({"phase": ["prefill", "prefill", "decode", "decode"],
                       "rows": [64, 128, 64, 128], "latency_s": [1.0, 0.5, 0.02, 0.03],
                       "energy_j": [50.0, 20.0, 2.0, 2.5], "status": "ok"})
    front = pareto(df, ["latency_s", "energy_j"])
    assert sorted(zip(front["phase"], front["rows"])) == [("decode", 64), ("prefill", 128)]
    assert len(pareto(df, ["latency_s", "energy_j"], by=[])) == 1  # one front: decode's


# ---- 7. report details ------------------------------------------------------------------------

def test_report_says_what_was_run_and_shows_unset_options_as_none(tmp_path):
    from experiments.report import make_report
    from experiments.sweep.runner import run_sweep

    spec = sweep_from_dict({"name": "r", "base": {"model": "tiny-llama", "chip": "edge",
                                                  "phase": "decode", "ctx": 8},
                            "parameters": {"mapping.quant": [None, "int8"],
                                           "batch": [1, 2]}}, "r.yaml")
    run_sweep(spec, tmp_path, workers=1, progress=False)
    make_report(tmp_path, tmp_path / "report")
    page = re.sub(r"data:image/png;base64,[^\"]+", "",
                  (tmp_path / "report" / "index.html").read_text())
    assert "What was run" in page and "tessera-sim" in page and "tiny-llama" in page
    assert ">none<" in page and "NaN" not in page and ">nan<" not in page
    figs = sorted(p.name for p in (tmp_path / "report").glob("pareto_energy_j*.png"))
    assert figs == ["pareto_energy_j_batch-1.png", "pareto_energy_j_batch-2.png"]


# ---- 8. messages ----------------------------------------------------------------------------

def test_missing_assembly_file_is_one_line_without_a_caret(capsys, tmp_path):
    code, _, err = run(capsys, "sim", str(tmp_path / "nothere.s"))
    one_line_error(code, err, "nothere.s: cannot read (No such file or directory)")
    assert "^" not in err and ":0:0" not in err


def test_a_system_name_given_as_chip_says_use_system(capsys, tmp_path):
    code, _, err = run(capsys, "run", "--chip", "h100x4", "--tp", "4", "--out", str(tmp_path))
    one_line_error(code, err, "h100x4 is a system preset".replace("h100x4", "'h100x4'"),
             "use --system h100x4")


def test_debug_after_the_command_version_and_help_defaults(capsys, tmp_path):
    with pytest.raises(Exception, match="system preset"):  # --debug: the traceback
        main(["run", "--chip", "h100x4", "--debug", "--out", str(tmp_path)])
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and re.match(r"tessera \d+\.\d+", capsys.readouterr().out)
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: decode)" in text and "sequences processed together" in text
    assert "(default: 1)" in text
    from experiments.cli import build_parser

    commands = set(build_parser()._subparsers._group_actions[0].choices)
    with pytest.raises(SystemExit):
        main(["sim", "--help"])
    named = re.findall(r"'tessera (\w+)'", capsys.readouterr().out)
    assert named and set(named) <= commands  # help names only commands that exist


# ---- 9. README ------------------------------------------------------------------------------

def test_readme_names_real_files_and_every_preset():
    readme = (ROOT / "README.md").read_text()
    assert "my_sweep" not in readme
    for path in re.findall(r"tessera sweep (\S+\.yaml)", readme):
        load_sweep(ROOT / path)  # ships and loads
    for out in re.findall(r"(?:-o|--trace|--plot) (\S+)", readme):
        assert out.startswith("results/"), out  # nothing lands in the repository root
    for name in list_models() + list_presets():
        assert f"`{name}`" in readme, name


def test_functional_run_prints_values_checked_against_numpy(capsys, tmp_path):
    code, out, _ = run(capsys, "run", "--model", "tiny-llama", "--chip", "edge", "--phase",
                       "prefill", "--seq", "8", "--functional", "--out", str(tmp_path))
    assert code == 0
    found = re.search(r"max \|error\| (\S+) \((\S+) bf16 units", out)
    assert found and float(found.group(2)) <= 4.0
    saved = __import__("numpy").load(tmp_path / "outputs.npz")
    assert saved["output"].shape == (8, 64)
    assert json.loads((tmp_path / "result.json").read_text())["versions"]["tessera-sim"]
