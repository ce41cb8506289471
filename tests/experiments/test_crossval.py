"""Cross-validation (``tessera validate --cv``): refit on the other regimes, predict one."""

from __future__ import annotations

import dataclasses
import json

import pandas as pd

from experiments.cli import main
from experiments.fit import cross_validate
from experiments.validate import load_target, validate_rows

ROWS = pd.DataFrame({"op": ["copy", "add_scalar"] * 2,
                     "bytes": [1 << 20, 1 << 20, 16 << 20, 16 << 20], "ms": [1.0] * 4})


def _truth(efficiency: float) -> pd.DataFrame:
    """Rows 'measured' on an h100 whose HBM reaches ``efficiency`` of its peak."""
    target = load_target("h100")
    hbm = dataclasses.replace(target.chip.hbm, efficiency=efficiency)
    chip = dataclasses.replace(target.chip, hbm=hbm)
    pred = validate_rows(dataclasses.replace(target, chip=chip), "memory", ROWS)
    return ROWS.assign(ms=pred["predicted"].to_numpy())


def test_a_parameter_that_describes_the_mechanism_carries_to_the_held_out_regime():
    """Measured rows made by one HBM efficiency: each fold refits it from the other op's
    rows (starting from the preset's 0.9) and predicts the held-out op nearly exactly."""
    rows = _truth(0.6)
    folds, held = cross_validate(load_target("h100"), "memory", rows, "op",
                                 ["hbm.efficiency"], rounds=2)
    assert [f.held for f in folds] == ["copy", "add_scalar"]
    assert len(held) == len(rows) and set(held["cv_fold"]) == {"copy", "add_scalar"}
    for f in folds:
        assert abs(f.fitted["hbm.efficiency"] - 0.6) < 0.05
        assert f.held_mape < 3.0


def test_cli_reports_folds_and_both_errors(tmp_path, capsys):
    csv = tmp_path / "m.csv"
    _truth(0.7).to_csv(csv, index=False)
    code = main(["validate", "h100", str(csv), "--cv", "bytes", "--fit", "hbm.efficiency",
                 "--rounds", "1", "--json"])
    out = capsys.readouterr().out
    assert code == 0
    summary = json.loads(out.strip().splitlines()[-1])
    assert [f["held"] for f in summary["folds"]] == [str(1 << 20), str(16 << 20)]
    assert summary["cases"] == 4 and summary["cv_column"] == "bytes"
    assert "held out bytes = 1048576 (2 rows)" in out


def test_cv_mistakes_are_one_line_errors(tmp_path, capsys):
    csv = tmp_path / "m.csv"
    ROWS.to_csv(csv, index=False)
    for args, message in ((["--cv", "H"], "--cv H: no such column"),
                          (["--cv", "op", "--fit", "hbm.speed"], "hbm.speed: no such chip field"),
                          (["--fit", "hbm.efficiency"], "--fit: only with --cv")):
        code = main(["validate", "h100", str(csv), *args])
        err = capsys.readouterr().err
        assert code != 0 and message in err and "Traceback" not in err


COLLECTIVES = pd.DataFrame({"op": ["all_reduce", "all_gather"] * 3, "world": [2] * 6,
                            "bytes": [1 << 16, 1 << 16, 1 << 18, 1 << 18, 1 << 20, 1 << 20],
                            "ms": [1.0] * 6})


def test_a_system_field_is_refitted_on_a_system_preset():
    """--cv on a collectives file refits the link's protocols (by name): rows 'measured'
    with LL's fixed cost at 10 us give it back from either op's rows."""
    from experiments.fit import read_field, with_fields

    target = load_target("h200x2")
    assert read_field(target, "link.protocols.LL.latency") == 6.38e-6
    truth = with_fields(target, {"link.protocols.LL.latency": 10e-6})
    rows = COLLECTIVES.assign(
        ms=validate_rows(truth, "collectives", COLLECTIVES)["predicted"].to_numpy())
    folds, _ = cross_validate(target, "collectives", rows, "op",
                              ["link.protocols.LL.latency"], rounds=3)
    for f in folds:
        assert abs(f.fitted["link.protocols.LL.latency"] - 10e-6) < 1e-6
        assert f.held_mape < 3.0


def test_a_field_past_its_bounds_is_no_fit_point():
    from experiments.fit import with_fields

    target = load_target("h200x2")
    assert with_fields(target, {"link.protocols.LL.efficiency": 1.2}) is None
    assert with_fields(target, {"link.protocols.LL.latency": -1.0}) is None


def test_numeric_column_cut_into_bands():
    from experiments.fit import regimes_of

    df = pd.DataFrame({"M": [1, 128, 129, 4096, 8192]})
    column, labels = regimes_of(df, "M:128,4096")
    assert column == "M"
    assert list(labels) == ["M<=128", "M<=128", "128<M<=4096", "128<M<=4096", "M>4096"]


def test_system_and_band_mistakes_are_one_line_errors(tmp_path, capsys):
    csv = tmp_path / "c.csv"
    COLLECTIVES.to_csv(csv, index=False)
    for args, message in (
            (["--cv", "op", "--fit", "link.protocols.XX.latency"], "no item named 'XX'"),
            (["--cv", "op", "--fit", "link.speed"], "link.speed: no such system field"),
            (["--cv", "bytes:1e6,x"], "the edges after ':' must be numbers"),
            (["--cv", "op:10"], "column op is not numeric")):
        code = main(["validate", "h200x2", str(csv), *args])
        err = capsys.readouterr().err
        assert code != 0 and message in err and "Traceback" not in err, (args, err)


def test_fit_on_another_file_then_predict_this_one(tmp_path, capsys):
    """--fit-on: the HBM efficiency fitted on copies predicts add_scalar rows made with it."""
    rows = _truth(0.6)
    copies, adds = tmp_path / "copies.csv", tmp_path / "adds.csv"
    rows[rows["op"] == "copy"].to_csv(copies, index=False)
    rows[rows["op"] == "add_scalar"].to_csv(adds, index=False)
    code = main(["validate", "h100", str(adds), "--fit-on", str(copies), "--fit",
                 "hbm.efficiency", "--rounds", "3", "--json"])
    out = capsys.readouterr().out
    assert code == 0
    s = json.loads(out.strip().splitlines()[-1])
    assert s["fit_on"] == "copies.csv" and abs(s["fitted"]["hbm.efficiency"] - 0.6) < 0.05
    assert s["mape_pct"] < 3.0 < s["in_sample_mape_pct"]  # the preset's 0.9 is far off
    code = main(["validate", "h100", str(adds), "--fit-on", str(copies), "--cv", "op"])
    assert code != 0 and "give one" in capsys.readouterr().err
