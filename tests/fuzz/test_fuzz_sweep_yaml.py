"""Mutated bundled studies and random text only ever raise a located SweepError."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings

from tests.fuzz.targets import SWEEP

FAST = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@FAST
@given(SWEEP.cases)
def test_sweep_yaml_only_raises_located_errors(case):
    SWEEP.run(case)
