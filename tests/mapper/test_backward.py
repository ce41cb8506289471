"""Gradients in functional mode: a tiny model's layer, forward then backward through the
simulated chip, against finite differences of an independent float64 numpy forward pass."""

from __future__ import annotations

import numpy as np
import pytest

from isa import DType, Space
from isa import numerics as nx
from mapper import reference as ref
from mapper.backward import training_graph
from mapper.layers import Phase
from mapper.model import load_model
from mapper.training import map_training
from simulator.run import simulate
from tests.simulator.conftest import make_chip


def _read(mapped, result, name: str) -> np.ndarray:
    t = mapped.graph.tensors[name]
    raw = result.read(Space.HBM, mapped.lowered.addresses[name], t.nbytes)
    return nx.from_bytes(raw, t.dtype, t.elements).reshape(t.shape).astype(np.float64)


def _loss(model, weights, x, dy, batch) -> float:
    """<layer(x), dy> in float64 (no bf16 rounding), the function the gradients are of."""
    y, _, _ = ref.layer(model, weights, 0, x, batch, 0)
    return float((y * dy).sum())


@pytest.fixture
def float64_reference(monkeypatch):
    monkeypatch.setattr(ref, "bf16", lambda v: np.asarray(v, dtype=np.float64))


WEIGHTS = {"tiny-llama": ("l0.qkv.w", "l0.o.w", "l0.gate_up.w", "l0.down.w"),
           "tiny-gpt2": ("l0.qkv.w", "l0.o.w", "l0.up.w", "l0.down.w", "l0.qkv.b", "l0.up.b")}


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2"])
def test_layer_gradients_match_finite_differences(name, float64_reference):
    model = load_model(name)
    phase = Phase("prefill", 2, seq=24)  # ragged attention tiles, two sequences
    chip = make_chip(cores=4)
    m = map_training(model, chip, phase, functional=True)
    r = simulate(m.lowered.programs, chip, functional=True)
    assert r.races == ()
    w = {k: np.asarray(v, dtype=np.float64) for k, v in m.weights.items()}
    x = nx.round_to(m.inputs["x0"], DType.BF16)
    dy = nx.round_to(m.inputs["d:x1"], DType.BF16)
    rng = np.random.default_rng(0)
    eps = 1e-4

    def directional(target: str, got: np.ndarray) -> tuple[float, float]:
        v = rng.standard_normal(got.shape)
        if target == "x0":
            f = [_loss(model, w, x + s * eps * v, dy, phase.batch) for s in (1, -1)]
        else:
            base = w[target]
            f = []
            for s in (1, -1):
                w[target] = base + s * eps * v.reshape(base.shape)
                f.append(_loss(model, w, x, dy, phase.batch))
            w[target] = base
        return float((got * v).sum()), (f[0] - f[1]) / (2 * eps)

    checks = {"x0": _read(m, r, "d:x0")}
    for wname in WEIGHTS[name]:
        checks[wname] = _read(m, r, wname + ".grad").reshape(w[wname].shape)
    for nname in ("l0.norm1.w", "l0.norm2.w"):
        parts = [nname + ".grad"] + ([nname + ".beta.grad"] if nname + ".beta.grad" in
                                     m.graph.tensors else [])  # layernorm: gamma, beta
        checks[nname] = np.concatenate([_read(m, r, p).reshape(-1) for p in parts])
    for target, got in checks.items():
        for _ in range(2):
            sim, fd = directional(target, got)
            # bf16 activations and gradients: a few parts in a hundred of the product
            assert sim == pytest.approx(fd, rel=0.04, abs=1e-3 * np.abs(got).sum()), target


def test_every_forward_op_of_the_decoders_has_a_backward_rule():
    for name in ("tiny-llama", "llama2-7b"):
        g = training_graph(load_model(name), Phase("prefill", 1, seq=16), 1)
        assert any(n.name.startswith("bwd.") for n in g.nodes)
        # every weight gets a gradient buffer
        weights = [t for t in g.tensors if t.endswith(".w") and not t.endswith("rope.table")]
        assert all(w + ".grad" in g.tensors for w in weights), name


def test_head_gradient_with_the_loss_kernel_matches_numpy():
    """Final norm, LM head, softmax cross-entropy's gradient (without the one-hot) and back
    to d:h, against numpy (bf16 tolerance)."""
    from mapper.backward import constant_values, training_head
    from mapper.lower import lower
    from mapper.weights import init_weights

    model = load_model("tiny-llama")
    phase = Phase("prefill", 1, seq=24)
    g = training_head(model, phase)
    weights = init_weights(g, 3)
    weights.update(constant_values(g, weights))
    h = np.random.default_rng(4).standard_normal((24, model.hidden))
    chip = make_chip(cores=4)
    low = lower(g, chip, weights, {"h": h}, layout="row")
    r = simulate(low.programs, chip, functional=True)
    assert r.races == ()
    hb = nx.round_to(h, DType.BF16)
    hn = ref.bf16(ref.rmsnorm(hb, weights["final_norm.w"], model.norm_eps))
    logits = ref.bf16(hn @ weights["lm_head.w"])
    e = np.exp(logits - logits.max(1, keepdims=True))
    p = ref.bf16(e / e.sum(1, keepdims=True))
    n = model.hidden * model.vocab
    got_w = nx.from_bytes(r.read(Space.HBM, low.addresses["lm_head.w.grad"], 4 * n),
                          DType.FP32, n).reshape(model.hidden, model.vocab)
    want_w = hn.T @ p
    np.testing.assert_allclose(got_w, want_w, rtol=0.02, atol=0.02 * np.abs(want_w).max())
