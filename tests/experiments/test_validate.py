"""tessera validate: every measured kind on a small fixture, skipped rows, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from experiments.cli import main
from experiments.validate import ValidateError, kind_of, read_measured

MEASURED = Path(__file__).parents[1] / "data" / "measured"

# one small row (or two) of every kind, in the measured files' own columns
FIXTURES = {
    "gemm": ("h100", "dtype,M,K,N,ms\nbf16,1,4096,4096,0.014496\nbf16,256,256,256,0.002980\n"),
    "gemm_lowp": ("h100", "dtype,M,K,N,ms\nfp8,32,4096,4096,0.009060\n"),
    "memory": ("h100", "op,bytes,ms\ncopy,1048576,0.002454\nadd_scalar,16777216,0.013928\n"),
    "vector": ("h100", "op,T,H,ms\ngelu,8,768,0.001487\nlayernorm,2048,4096,0.018452\n"),
    "attention": ("h100", "phase,B,Hq,Hkv,Sq,Skv,D,causal,ms\n"
                          "decode,8,32,32,1,512,128,False,0.027832\n"
                          "prefill,1,32,32,512,512,128,True,0.014620\n"),
    "layers": ("h100", "model,phase,B,S,ctx,ms_per_layer\nllama2-7b,decode,1,1,512,0.197196\n"),
    "model_infer": ("h200", "model,phase,B,S,ctx,ms\ntiny-llama,decode,2,1,64,0.05\n"
                            "tiny-llama,prefill,1,32,32,0.05\n"),
    "tp_layers": ("h200x2", "model,phase,world,B,S,ctx,ms_per_layer\n"
                            "llama2-7b,decode,2,1,1,512,0.15\n"),
    "collectives": ("h200x2", "op,world,bytes,ms\nall_reduce,2,65536,0.008920\n"
                              "all_gather,2,268435456,0.544464\n"),
    "power": ("h100", "op,dtype,M,K,N,bytes,B,Hq,Hkv,Sq,Skv,D,causal,calls_per_s,"
                      "mean_power_w,mean_sm_clock_mhz\nidle,,,,,,,,,,,,,0,119.8,1980\n"
                      "copy,bf16,,,,268435456,,,,,,,,5000,500,1980\n"),
}


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["validate", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("kind", sorted(FIXTURES))
def test_every_kind_is_recognised_predicted_and_summarised(kind, tmp_path, capsys):
    preset, text = FIXTURES[kind]
    csv = tmp_path / f"{kind}.csv"
    csv.write_text(text)
    out_csv, plot = tmp_path / "pred.csv", tmp_path / "fig.png"
    code, out, _ = _run(capsys, preset, str(csv), "--json", "--out", str(out_csv),
                        "--plot", str(plot))
    assert code == 0
    summary = json.loads(out.strip().splitlines()[-1])
    rows = len(text.strip().splitlines()) - 1
    assert summary["kind"] == kind
    assert summary["cases"] == rows and summary["skipped"] == 0
    for key in ("mape_pct", "median_ape_pct", "max_ape_pct"):
        assert summary[key] >= 0
    pred = pd.read_csv(out_csv)
    assert (pred["predicted"] > 0).all() and len(pred) == rows
    assert {"measured", "ape_pct", "clock_mhz", "power_w"} <= set(pred.columns)
    assert plot.stat().st_size > 1000


def test_a_whole_model_row_is_its_layers_and_its_head():
    """model_infer: every layer as the PyTorch stack runs it (eager composites), then the
    head on the last token of each sequence (the time to first token, or one decode step)."""
    from experiments.measured_work import AS_EAGER, Target, model_infer
    from experiments.run import run_phase
    from hardware.chips import load_chip
    from mapper.layers import Phase
    from mapper.model import load_model

    chip = load_chip("h200")
    row = pd.Series({"model": "tiny-llama", "phase": "prefill", "B": 2, "S": 16, "ctx": 16})
    got = model_infer(Target("h200", chip), row)
    run = run_phase(load_model("tiny-llama"), chip, Phase("prefill", 2, seq=16), AS_EAGER)
    assert got.time_s == pytest.approx(run.latency_s, rel=1e-12)
    assert got.energy_total_j == pytest.approx(run.energy_j, rel=1e-12)


def test_calibration_files_are_recognised_by_their_columns():
    kinds = {}
    for p in sorted(MEASURED.glob("*/*.csv")):
        try:
            kinds[p.relative_to(MEASURED).as_posix()] = read_measured(p)[0]
        except ValidateError:
            kinds[p.relative_to(MEASURED).as_posix()] = None
    assert kinds == {"h100/attention.csv": "attention", "h100/gemm.csv": "gemm",
                     "h100/gemm_lowp.csv": "gemm_lowp", "h100/layers.csv": "layers",
                     "h100/memory.csv": "memory", "h100/power.csv": "power",
                     "h100/vector.csv": "vector",
                     "h200/gemm.csv": "gemm", "h200/vector.csv": "vector",
                     "h200/memory.csv": "memory", "h200/model_infer.csv": "model_infer",
                     "h200/energy.csv": "energy", "h200/iterations.csv": "iterations",
                     "h200/optimizer.csv": "optimizer", "h200/train_layers.csv": "train_layers",
                     "h200/train_step.csv": "train_step",
                     "h200x4/collectives_w2.csv": "collectives"}


def test_rows_the_model_cannot_express_are_skipped_with_the_reason(tmp_path, capsys):
    csv = tmp_path / "g.csv"
    csv.write_text("dtype,M,K,N,ms\nbf16,64,64,64,0.0024\ntf32,64,64,64,0.003\n"
                   "bf16,-3,64,64,0.003\nbf16,64,64,64,oops\n")
    code, out, _ = _run(capsys, "h100", str(csv), "--json")
    assert code == 0
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["cases"] == 1 and summary["skipped"] == 3
    assert "row 3: dtype 'tf32' not modelled" in out
    assert "row 4: column M: '-3' is not a positive integer" in out
    assert "row 5: ms 'oops' is not a positive number" in out


def test_collectives_on_a_single_chip_are_skipped(tmp_path, capsys):
    csv = tmp_path / "c.csv"
    csv.write_text("op,world,bytes,ms\nall_reduce,2,65536,0.0089\n")
    code, out, _ = _run(capsys, "h100", str(csv))
    assert code == 0 and "need a system preset" in out


def test_a_row_over_the_instruction_budget_is_skipped_not_run(tmp_path, capsys):
    csv = tmp_path / "g.csv"
    csv.write_text("dtype,M,K,N,ms\nbf16,4096,4096,4096,0.1776\n")
    code, out, _ = _run(capsys, "h100", str(csv), "--max-instructions", "1000")
    assert code == 0 and "over the limit of 1,000 (raise it with --max-instructions)" in out


@pytest.mark.parametrize("content, message", [
    ("a,b\n1,2\n", "match no measured kind"),
    ("", "cannot read as CSV"),
    ("dtype,M,K,N,ms\n\"bf16,1\n", "cannot read as CSV"),
])
def test_a_bad_file_is_one_line_naming_it(content, message, tmp_path, capsys):
    csv = tmp_path / "bad.csv"
    csv.write_text(content)
    code, _, err = _run(capsys, "h100", str(csv))
    assert code != 0
    assert err.count("\n") == 1 and "bad.csv" in err and message in err


def test_unknown_preset_and_missing_file_are_errors(tmp_path, capsys):
    code, _, err = _run(capsys, "h999", str(MEASURED / "h100" / "gemm.csv"))
    assert code != 0 and "unknown preset 'h999'" in err
    code, _, err = _run(capsys, "h100", str(tmp_path / "none.csv"))
    assert code != 0 and "none.csv: no such file" in err


def test_kind_of_prefers_low_precision_when_any_row_is_not_half():
    df = pd.DataFrame({"dtype": ["bf16", "int8"], "M": [1, 1], "K": [1, 1], "N": [1, 1],
                       "ms": [1.0, 1.0]})
    assert kind_of(df, "x.csv") == "gemm_lowp"
    with pytest.raises(ValidateError, match="x.csv: columns"):
        kind_of(pd.DataFrame({"q": [1]}), "x.csv")


def test_fuzzer_findings_stay_fixed(tmp_path, capsys):
    # a quoted header with a newline in a column name: the error is still one line
    csv = tmp_path / "nl.csv"
    csv.write_text('"type,M,K,N,ms\n"type,M,K,N,ms\nbf16,1,4096,4096,0.0145\n')
    code, _, err = _run(capsys, "h100", str(csv))
    assert code != 0 and err.count("\n") == 1 and "match no measured kind" in err
    # a size that overflows to infinity is a skipped row, not an OverflowError
    csv = tmp_path / "inf.csv"
    csv.write_text("dtype,M,K,N,ms\nbf16,1e3081,4096,4096,0.0145\n")
    code, out, _ = _run(capsys, "h100", str(csv))
    assert code == 0 and "column M: 'inf' is not a positive integer" in out
