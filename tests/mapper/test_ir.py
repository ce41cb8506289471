"""The typed graph IR: every op has attributes and a lowering; the verifier catches what a
builder or a pass gets wrong, naming the pass and the node."""

from __future__ import annotations

import dataclasses

import pytest

from isa import DType
from isa.errors import TesseraError
from mapper.graph import Graph, Kind, Node, Tensor
from mapper.layers import Phase, build_layers
from mapper.lowerings import LOWERINGS
from mapper.model import load_model
from mapper.ops import ATTRS, LinearAttrs, Op
from mapper.passes import PASSES, apply_passes
from mapper.pipeline import MapOptions
from mapper.verify import GraphError, verify

BF = DType.BF16


def test_every_op_has_attributes_and_one_lowering():
    assert set(ATTRS) == set(Op)
    assert set(LOWERINGS) == set(Op)


def _gemm_graph() -> Graph:
    g = Graph()
    g.add(Tensor("x", (4, 8), BF, Kind.INPUT))
    g.add(Tensor("w", (8, 16), BF, Kind.WEIGHT))
    g.add(Tensor("y", (4, 16), BF))
    return g


def test_attributes_are_typed_and_checked_when_the_node_is_made():
    g = _gemm_graph()
    node = g.op("linear", "lin", ["x", "w"], ["y"], bias=False)
    assert node.op is Op.LINEAR and node.attrs.act is None and node.attrs.w_layout == "blocked"
    with pytest.raises(ValueError, match="lin2: op linear takes attributes bias, act"):
        g.op(Op.LINEAR, "lin2", ["x", "w"], ["y"], bias=False, actt="gelu")
    with pytest.raises(TypeError, match="needs NormAttrs"):
        Node(Op.NORM, "n", ("x",), ("y",), LinearAttrs())


@pytest.mark.parametrize("break_it,message", [
    (lambda g: g.op(Op.LINEAR, "l", ["nothing", "w"], ["y"]), "no tensor 'nothing'"),
    (lambda g: (g.add(Tensor("t", (4, 8), BF)), g.op(Op.ADD, "a", ["t", "x"], ["y"])),
     "reads 't' before anything writes it"),
    (lambda g: (g.add(Tensor("w2", (9, 16), BF, Kind.WEIGHT)),
                g.op(Op.LINEAR, "l", ["x", "w2"], ["y"])), "do not chain"),
    (lambda g: g.op(Op.LINEAR, "l", ["x", "w"], ["y"], scale="w.scale"),
     "scale names no tensor"),
])
def test_the_verifier_names_the_pass_and_the_node(break_it, message):
    g = _gemm_graph()
    break_it(g)
    with pytest.raises(GraphError, match=message) as info:
        verify(g, "some_pass")
    assert str(info.value).startswith("after some_pass: ")


def test_a_pass_that_breaks_the_graph_is_caught_by_name(monkeypatch):
    def bad(g, w, o, notes):  # noqa: ANN001, ARG001
        out = g.copy()
        node = next(n for n in out.nodes if n.op == Op.LINEAR)
        out.nodes[out.nodes.index(node)] = node.with_attrs(residual="gone")
        return out, w
    monkeypatch.setattr("mapper.passes.PASSES", (*PASSES, ("bad_pass", lambda o: True, bad)))
    g = build_layers(load_model("tiny-llama"), Phase("prefill", 1, seq=4), 1)
    with pytest.raises(GraphError, match="after bad_pass: l0.qkv .*residual names no tensor"):
        apply_passes(g, None, MapOptions())


def test_passes_read_as_a_list_and_every_model_verifies_after_each():
    assert [name for name, _, _ in PASSES] == [
        "low_rank", "sparsity", "quantize", "quantize_activations", "unfuse", "eager",
        "fuse_norm_projection"]
    for model in ("tiny-llama", "tiny-gpt2", "tiny-mixtral"):
        g = build_layers(load_model(model), Phase("decode", 2, ctx=8), 2)
        for opts in (MapOptions(), MapOptions(fusion=False), MapOptions(quant="int8",
                                                                         act_quant="int8"),
                     MapOptions(fusion=False, kernels="eager")):
            if model == "tiny-mixtral" and opts.act_quant:
                continue
            out, _, _ = apply_passes(g, None, opts)  # verified after every pass
            assert all(dataclasses.is_dataclass(n.attrs) for n in out.nodes)


def test_eager_profile_launches_pytorchs_kernel_chains():
    """kernels: eager runs RMSNorm as 8 kernels, RoPE as 15 and SwiGLU's product as 2
    (mapper/eager.py); it is a timing profile, so functional mode refuses it."""
    g = build_layers(load_model("tiny-llama"), Phase("decode", 2, ctx=8), 1)
    out, _, _ = apply_passes(g, None, MapOptions(fusion=False, kernels="eager"))
    names = [n.name for n in out.nodes if n.op == Op.EWISE]
    assert sum(n.startswith("l0.norm1.") for n in names) == 8
    assert sum(n.startswith("l0.rope.") for n in names) == 15
    assert sum(n.startswith("l0.silu_mul.") for n in names) == 2
    assert not any(n.op in (Op.NORM, Op.ROPE, Op.SILU_MUL) for n in out.nodes)
    with pytest.raises(TesseraError, match="timing profile"):
        apply_passes(g, None, MapOptions(kernels="eager", functional=True))


def test_eager_kernels_cost_more_than_fused_ones():
    from experiments.api import run

    fused = run("tiny-llama", "edge", phase="prefill", seq=32, fusion=False)
    eager = run("tiny-llama", "edge", phase="prefill", seq=32, fusion=False, kernels="eager")
    assert eager.headline()["latency_s"] > 1.5 * fused.headline()["latency_s"]
