"""Mutated model presets and random text only ever raise a located ModelError."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings

from tests.fuzz.targets import MODEL

FAST = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@FAST
@given(MODEL.cases)
def test_model_yaml_only_raises_located_errors(case):
    MODEL.run(case)
