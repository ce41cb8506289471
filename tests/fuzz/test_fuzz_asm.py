"""Mutated examples, token soup, extreme expressions, macro bombs and include graphs only ever
raise a located AsmError, and whatever assembles survives the binary round trip."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings

from tests.fuzz.targets import ASM, INCLUDES

# (benchmarks/fuzz_long.py runs every fuzzer for thousands of inputs)
FAST = settings(max_examples=100, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@FAST
@given(ASM.cases)
def test_assembly_only_raises_located_errors(case):
    ASM.run(case)


@settings(FAST, max_examples=60)
@given(INCLUDES.cases)
def test_include_graphs_find_every_cycle(case):
    INCLUDES.run(case)
