"""Reorganising code moves no number: a few fixed runs equal their pinned figures.

The pins (tests/data/golden_runs.json) were taken by ``benchmarks/golden_runs.py --write``
before the instruction registry, the hardware package and the typed IR went in; a model
change that moves them on purpose re-pins them in the same commit.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
from golden_runs import PINS, figures  # noqa: E402


@pytest.fixture(scope="module")
def found() -> dict:
    return figures()


@pytest.mark.parametrize("name", sorted(json.loads(PINS.read_text())))
def test_fixed_run_gives_its_pinned_figures(name, found):
    pinned = json.loads(PINS.read_text())[name]
    for key, value in pinned.items():
        assert found[name][key] == pytest.approx(value, rel=1e-9), key
