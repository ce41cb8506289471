"""Mutated measured CSVs and random text: tessera validate only raises a ValidateError naming
the file, or predicts every row / skips it with its row number and the reason."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings

from tests.fuzz.targets import MEASURED

# (benchmarks/fuzz_long.py runs every fuzzer for thousands of inputs)
FAST = settings(max_examples=75, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@FAST
@given(MEASURED.cases)
def test_measured_csv_only_raises_located_errors(case):
    MEASURED.run(case)
