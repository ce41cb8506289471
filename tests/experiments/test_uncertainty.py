"""Error bars: a validated preset as shipped gets its interval; anything else says it is
unvalidated."""

from __future__ import annotations

import dataclasses
import json

import pytest

from experiments import api
from experiments.cli import main
from experiments.uncertainty import table, validated
from hardware.chips import load_chip


def test_only_a_validated_preset_as_shipped_is_validated():
    h200 = load_chip("h200")
    assert validated(h200)
    faster = dataclasses.replace(h200, hbm=dataclasses.replace(h200.hbm, bandwidth=9e12))
    assert not validated(faster)
    assert not validated(load_chip("edge"))


def test_a_run_on_a_validated_preset_carries_its_interval():
    kinds = table()["kinds"]
    entry = kinds.get("model_infer.decode", kinds["model_infer"])  # a decode step's
    rep = api.run("tiny-llama", "h200", phase="decode", batch=2, ctx=32)
    unc, latency = rep.notes["uncertainty"], rep.headline()["latency_s"]
    assert unc["validated"]
    assert unc["latency_s_p10"] == pytest.approx(entry["p10"] * latency)
    assert unc["latency_s_p90"] == pytest.approx(entry["p90"] * latency)
    assert unc["latency_s_p10"] < unc["latency_s_p90"]
    assert "held-out rows" in unc["basis"]


def test_a_generation_prices_its_prefill_and_its_steps_each_with_its_phases_interval(
        monkeypatch):
    """TTFT with the measured prefills' ratios, TPOT with the decodes', the whole latency
    as the sum of its parts."""
    from experiments import uncertainty

    kinds = {"model_infer": {"p10": 0.9, "p90": 1.2, "rows": 11, "coverage": 0.5},
             "model_infer.prefill": {"p10": 1.05, "p90": 1.15, "rows": 5, "coverage": 0.6},
             "model_infer.decode": {"p10": 0.97, "p90": 1.03, "rows": 6, "coverage": 0.5}}
    monkeypatch.setattr(uncertainty, "table", lambda: {"presets": ["h200"], "kinds": kinds})
    rep = api.run("tiny-llama", "h200", phase="generate", batch=1, seq=16, tokens=4)
    head = rep.headline()
    unc = uncertainty.report_fields(rep, load_chip("h200"))
    assert unc["ttft_s_p10"] == pytest.approx(1.05 * head["ttft_s"])
    assert unc["tpot_s_p90"] == pytest.approx(1.03 * head["tpot_s"])
    decoding = head["latency_s"] - head["ttft_s"]
    assert unc["latency_s_p10"] == pytest.approx(1.05 * head["ttft_s"] + 0.97 * decoding)
    assert unc["latency_s_p90"] == pytest.approx(1.15 * head["ttft_s"] + 1.03 * decoding)
    assert "prefill" in unc["basis"] and "decode" in unc["basis"]


def test_json_and_summary_say_unvalidated_off_the_validated_presets(tmp_path, capsys):
    assert main(["run", "--model", "tiny-llama", "--chip", "edge", "--ctx", "16", "--json",
                 "--out", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert json.loads(out.strip().splitlines()[-1])["validated"] is False
    assert "unvalidated" in out


def test_validate_puts_each_rows_interval_beside_it_and_counts_the_rows_inside(tmp_path,
                                                                                capsys):
    """On a validated preset each predicted row gets the kind's interval, and the summary
    counts the measured values inside it; off it (the h100 has no whole-model rows) none."""
    entry = table()["kinds"]["memory"]
    csv = tmp_path / "m.csv"
    csv.write_text("op,bytes,ms\ncopy,4194304,0.0045\nadd_scalar,4194304,1.0\n")
    df, s = api.validate("h200", csv)
    assert list(df["p10"]) == pytest.approx(list(df["predicted"] * entry["p10"]))
    assert list(df["p90"]) == pytest.approx(list(df["predicted"] * entry["p90"]))
    inside = int(((df["measured"] >= df["p10"]) & (df["measured"] <= df["p90"])).sum())
    assert s["with_interval"] == 2 and s["inside_interval"] == inside
    assert s["inside_interval"] < 2  # 1 ms for 8 MiB is far outside anything predicted
    assert main(["validate", "h200", str(csv)]) == 0
    assert f"{inside} of 2 rows" in capsys.readouterr().out
    df, s = api.validate("h100", csv)
    assert "p10" not in df.columns and "with_interval" not in s
