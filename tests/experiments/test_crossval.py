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
