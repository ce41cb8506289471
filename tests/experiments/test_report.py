"""Reports: every figure of a sweep and of a run exists, is non-empty, and is in the page."""

from __future__ import annotations

import pytest

from experiments.cli import main
from experiments.report import ReportError, make_report
from experiments.sweep.runner import run_sweep
from experiments.sweep.spec import sweep_from_dict


def test_sweep_report(tmp_path):
    spec = sweep_from_dict({"name": "r", "base": {"model": "tiny-llama", "chip": "edge",
                                                   "phase": "decode", "ctx": 16},
                            "parameters": {"chip.core.array.rows": [16, 32]}}, "r.yaml")
    run_sweep(spec, tmp_path / "res", workers=1, progress=False)
    figs = make_report(tmp_path / "res", tmp_path / "rep")
    names = {f.stem for f in figs}
    assert {"pareto_energy_j", "pareto_area_mm2", "utilization", "energy"} <= names
    page = (tmp_path / "rep" / "index.html").read_text()
    for f in figs:
        assert f.stat().st_size > 1000 and f.with_suffix(".svg").stat().st_size > 1000
        assert f.stem in page
    assert "Pareto front" in page


def test_run_report_with_roofline_and_timeline(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "--model", "tiny-llama", "--chip", "edge", "--phase", "prefill",
                 "--seq", "16", "--out", str(out), "--trace", str(tmp_path / "t.json")]) == 0
    assert main(["report", str(out)]) == 0
    rep = out / "report"
    for stem in ("roofline", "energy", "timeline"):
        assert (rep / f"{stem}.png").stat().st_size > 1000
        assert (rep / f"{stem}.svg").stat().st_size > 1000
    capsys.readouterr()


def test_report_of_a_folder_without_results(tmp_path):
    with pytest.raises(ReportError, match="neither a sweep folder"):
        make_report(tmp_path, tmp_path / "rep")
