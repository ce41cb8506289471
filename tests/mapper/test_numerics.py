"""Lowered tiny models, run in functional mode, match an independent numpy forward pass."""

from __future__ import annotations

import pytest

from mapper.layers import Phase
from mapper.model import load_model
from tests.mapper.helpers import bf16_ulp, compare_layers, run_functional

PHASES = [Phase("prefill", batch=2, seq=12), Phase("decode", batch=3, ctx=20)]


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2"])
@pytest.mark.parametrize("phase", PHASES, ids=lambda p: p.kind)
def test_tiny_model_matches_numpy_within_bf16(name, phase):
    model = load_model(name)
    mapped, result, caches = run_functional(model, phase)
    assert result.races == ()
    for err, scale, kerr, kscale in compare_layers(model, mapped, result, caches):
        # bf16 activations between kernels: a few units in the last place of the largest value
        assert err <= 4 * bf16_ulp(scale)
        assert kerr <= 4 * bf16_ulp(kscale)
