"""A sweep point priced from its kernels' costs (``experiments.run.composed_phase``) gives
the figures of mapping and simulating the phase whole."""

from __future__ import annotations

import dataclasses

import pytest

from experiments.run import composable, run_model
from hardware.chips import load_chip
from mapper.model import load_model
from mapper.pipeline import MapOptions

FIELDS = ("time_s", "energy_total_j", "flops", "macs", "instructions", "clock_hz")


def _same(a, b) -> None:  # noqa: ANN001
    for f in FIELDS:
        assert getattr(a, f) == pytest.approx(getattr(b, f), rel=1e-12), f
    assert a.bytes == pytest.approx(b.bytes, rel=1e-12)
    for e in a.engines:
        assert a.engines[e].busy_s == pytest.approx(b.engines[e].busy_s, rel=1e-12), e


@pytest.mark.parametrize("model,mode,batch,seq,ctx,opts", [
    ("tiny-llama", "decode", 3, 16, 37, MapOptions()),
    ("tiny-llama", "prefill", 2, 24, 0, MapOptions(kernels="eager")),
    ("tiny-mixtral", "decode", 4, 16, 33, MapOptions(confirm_top=1, layout="row")),
    ("tiny-gpt2", "decode", 2, 16, 20, MapOptions(quant="int8")),
])
def test_composed_equals_mapped(model, mode, batch, seq, ctx, opts):
    m, chip = load_model(model), load_chip("edge")
    whole = run_model(m, chip, mode, batch, seq, ctx, 1, opts)
    parts = run_model(m, chip, mode, batch, seq, ctx, 1, opts, compose=True)
    a, b = (whole.prefill, parts.prefill) if mode == "prefill" else \
        (whole.decode[0], parts.decode[0])
    assert b.mapped is None and a.mapped is not None  # the composed one kept no programs
    _same(a.layer, b.layer)
    _same(a.head, b.head)
    assert a.repeat == b.repeat
    assert whole.headline() == pytest.approx(parts.headline(), rel=1e-12)


def test_what_is_not_composed():
    m, plain = load_model("tiny-llama"), MapOptions()
    assert composable(m, plain, False, None, None)
    assert not composable(m, dataclasses.replace(plain, functional=True), False, None, None)
    assert not composable(m, plain, True, None, None)  # a trace needs the programs
    assert not composable(m, dataclasses.replace(plain, quant="int8", quant_layers=(0,)),
                          False, None, None)
