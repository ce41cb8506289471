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
    entry = table()["kinds"]["model_infer"]
    rep = api.run("tiny-llama", "h200", phase="decode", batch=2, ctx=32)
    unc, latency = rep.notes["uncertainty"], rep.headline()["latency_s"]
    assert unc["validated"]
    assert unc["latency_s_p10"] == pytest.approx(entry["p10"] * latency)
    assert unc["latency_s_p90"] == pytest.approx(entry["p90"] * latency)
    assert unc["latency_s_p10"] < unc["latency_s_p90"]
    assert "held-out rows" in unc["basis"]


def test_json_and_summary_say_unvalidated_off_the_validated_presets(tmp_path, capsys):
    assert main(["run", "--model", "tiny-llama", "--chip", "edge", "--ctx", "16", "--json",
                 "--out", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert json.loads(out.strip().splitlines()[-1])["validated"] is False
    assert "unvalidated" in out
