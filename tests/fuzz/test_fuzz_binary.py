"""Truncated, flipped, random and absurd binaries only ever raise a located DecodeError."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings

from tests.fuzz.targets import BINARY

FAST = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@FAST
@given(BINARY.cases)
def test_binary_only_raises_located_errors(case):
    BINARY.run(case)
