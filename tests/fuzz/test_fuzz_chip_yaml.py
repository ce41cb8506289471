"""Mutated chip presets and random text only ever raise a located ConfigError."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings

from tests.fuzz.targets import CHIP

FAST = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@FAST
@given(CHIP.cases)
def test_chip_yaml_only_raises_located_errors(case):
    CHIP.run(case)
