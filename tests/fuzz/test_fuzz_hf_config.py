"""Mutated Hugging Face config.json files only ever raise a located ModelError."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings

from tests.fuzz.targets import HF

FAST = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@FAST
@given(HF.cases)
def test_hf_config_only_raises_located_errors(case):
    HF.run(case)
