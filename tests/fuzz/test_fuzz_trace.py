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


def test_a_jsonl_line_that_is_not_an_object_is_a_located_error(tmp_path):
    """Found by the fuzzer: a bare number on a line escaped as a TypeError."""
    import pytest

    from experiments.serve.workload import WorkloadError, read_trace

    f = tmp_path / "t.jsonl"
    f.write_text('{"arrival_s": 0.0, "prompt_tokens": 12, "output_tokens": 3}\n-1\n')
    with pytest.raises(WorkloadError, match=r"t.jsonl:2: expected one JSON object per line"):
        read_trace(f)
