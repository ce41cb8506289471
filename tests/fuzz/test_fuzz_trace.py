"""Mutated serving trace files (CSV and JSONL) and random text: ``tessera serve --trace``
only raises a WorkloadError naming the file (and the line), or reads sane requests."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings

from tests.fuzz.targets import TRACE

FAST = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@FAST
@given(TRACE.cases)
def test_trace_files_only_raise_located_errors(case):
    TRACE.run(case)
