"""The public Python API: what the CLI does, as calls (docs/api.md)."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest

from experiments import api
from experiments.cli import main
from isa.errors import TesseraError

ROOT = Path(__file__).parents[2]


def test_the_dse_example_runs_and_the_variant_is_faster():
    dse = runpy.run_path(str(ROOT / "examples" / "dse.py"))
    table, df = dse["main"](["--model", "tiny-llama", "--chip", "edge", "--seq", "16",
                             "--ctx", "32", "--workers", "1"])
    assert len(table) == 2 and table["decode_step_ms"][1] < table["decode_step_ms"][0]
    assert len(df) == 4 and set(df["status"]) == {"ok"}


def test_the_cli_is_a_thin_layer_over_the_api(capsys, tmp_path):
    assert main(["run", "--model", "tiny-llama", "--chip", "edge", "--phase", "prefill",
                 "--seq", "16", "--out", str(tmp_path)]) == 0
    cli = json.loads((tmp_path / "result.json").read_text())["headline"]
    rep = api.run("tiny-llama", "edge", phase="prefill", seq=16)
    assert rep.headline() == pytest.approx(cli, rel=1e-12)


def test_chip_and_model_variants_are_checked_like_files():
    c = api.chip("edge", {"hbm.bandwidth": "51.2 GB/s"})
    assert c.hbm.bandwidth == 51.2e9
    with pytest.raises(TesseraError, match="core.array.rowz"):
        api.chip("edge", {"core.array.rowz": 3})
    assert api.model("llama2-7b", layers=4).layers == 4
    with pytest.raises(TesseraError, match="kv_heads"):
        api.model("llama2-7b", kv_heads=5)


@pytest.mark.parametrize("kwargs,expect", [
    ({"phase": "train"}, "phase: expected one of prefill, decode, generate"),
    ({"batch": 0}, "batch must be a positive integer"),
    ({"tp": 2}, "need a multi-chip system"),
    ({"quantt": "int8"}, "mapping options:"),
])
def test_bad_arguments_are_one_line_errors(kwargs, expect):
    with pytest.raises(TesseraError, match=expect):
        api.run("tiny-llama", "edge", **kwargs)


def test_program_sweep_validate_and_presets(tmp_path):
    r = api.run_program(ROOT / "examples" / "gemm_tiled.s", "edge", functional=True)
    assert r.time_s > 0 and r.macs > 0
    df = api.sweep({"model": "tiny-llama", "chip": "edge", "phase": "decode", "ctx": 8},
                   {"batch": [1, 2]})
    assert list(df["batch"]) == [1, 2] and set(df["status"]) == {"ok"}
    csv = tmp_path / "gemm.csv"
    csv.write_text("dtype,M,K,N,ms\nbf16,256,256,256,0.01\n")
    rows, summary = api.validate("h100", csv)
    assert rows["predicted"][0] > 0 and summary["cases"] == 1
    assert "h100" in api.presets()["chips"]


def test_run_flags_and_sweep_checks_come_from_the_mapping_options():
    from experiments.cli import build_parser
    from experiments.sweep.spec import SweepError, sweep_from_dict
    from mapper.pipeline import option

    run = build_parser()._subparsers._group_actions[0].choices["run"]
    flags = {a.dest: a for a in run._actions}
    for name in ("quant", "act_quant", "sparsity", "quant_group", "low_rank", "seed"):
        f = option(name)
        assert flags[name].choices == f.metadata["choices"]
        assert flags[name].default == f.default and flags[name].help == f.metadata["help"]
    with pytest.raises(SweepError, match="expected one of auto, blocked, row"):
        sweep_from_dict({"base": {"model": "tiny-llama", "chip": "edge"},
                         "parameters": {"mapping.layout": ["diagonal"]}}, "s.yaml")


def test_train_is_the_cli_step_and_checks_its_knobs():
    r = api.train("tiny-llama", system="h100x4", micro_batch=2, seq=64, tp=2, dp=2, sp=True)
    assert r.step_s > 0 and 0 < r.mfu < 1 and r.memory.total > 0
    with pytest.raises(api.ApiError, match="zer0: not a training knob"):
        api.train("tiny-llama", zer0=1)
