"""Each mapper pass does what it promises: bytes, numerics, traffic, overlap."""

from __future__ import annotations

import numpy as np
import pytest

from mapper.layers import Phase
from mapper.model import load_model
from mapper.passes import decoded_weights
from mapper.pipeline import MapOptions, map_model
from mapper.reference import bf16
from simulator.result import sequence
from simulator.run import simulate
from tests.mapper.helpers import bf16_ulp, compare_layers, read, run_functional
from tests.simulator.conftest import make_chip

PREFILL = Phase("prefill", batch=2, seq=12)


def weight_bytes(mapped) -> int:
    g = mapped.graph
    return sum(g.tensors[n.inputs[1]].nbytes for n in g.nodes if n.op == "linear")


@pytest.mark.parametrize("scheme, group, factor", [
    ("int8", 0, 2), ("fp8", 0, 2), ("int4", 0, 4), ("log4", 0, 4), ("cluster16", 0, 4),
    ("int4", 16, 4), ("fp4", 16, 4)])
def test_quantization_shrinks_weight_bytes_and_hbm_traffic(scheme, group, factor):
    model = load_model("tiny-llama")
    chip = make_chip(cores=4)
    base = map_model(model, chip, PREFILL, MapOptions())
    quant = map_model(model, chip, PREFILL, MapOptions(quant=scheme, quant_group=group))
    assert weight_bytes(base) == factor * weight_bytes(quant)
    r0 = sequence([simulate(p, chip) for p in base.lowered.kernel_programs])
    r1 = sequence([simulate(p, chip) for p in quant.lowered.kernel_programs])
    if not group:  # (a group per K-step forces small K tiles: activations are re-read more)
        assert r1.bytes["hbm_read"] < r0.bytes["hbm_read"]


@pytest.mark.parametrize("scheme, group, bound", [
    ("int8", 0, 0.02), ("fp8", 0, 0.08), ("int4", 0, 0.25), ("int8", 16, 0.02),
    ("int4", 16, 0.2), ("fp4", 16, 0.3), ("log4", 0, 0.5), ("cluster16", 0, 0.3)])
def test_quantized_model_error_is_bounded(scheme, group, bound):
    """Output error against the bf16 model, relative to the output's scale; and the run
    computes exactly what numpy computes with the decoded weights."""
    model = load_model("tiny-llama")
    base, rb, _ = run_functional(model, PREFILL)
    q, rq, _ = run_functional(model, PREFILL, MapOptions(functional=True, layers_mapped=None,
                                                         seed=3, quant=scheme,
                                                         quant_group=group))
    shape = (PREFILL.tokens, model.hidden)
    y0 = read(base, rb, f"x{model.layers}", shape)
    y1 = read(q, rq, f"x{model.layers}", shape)
    rel = np.abs(y1 - y0).max() / np.abs(y0).max()
    assert 0 < rel <= bound
    assert rq.races == ()
    decoded = {k: decoded_weights(q.weights, k) for k in q.weights}
    for err, scale, *_ in compare_layers(model, q, rq, {}, decoded):
        assert err <= 4 * bf16_ulp(scale)


def test_sparse_24_matches_numpy_on_the_pruned_weights_and_halves_macs():
    model = load_model("tiny-llama")
    opts = MapOptions(functional=True, layers_mapped=None, seed=3, sparsity="2:4")
    mapped, result, _ = run_functional(model, PREFILL, opts)
    for name, w in mapped.weights.items():
        if name.endswith((".qkv.w", ".o.w", ".gate_up.w", ".down.w")):
            groups = (w.reshape(-1, 4, w.shape[1]) != 0).sum(axis=1)
            assert groups.max() <= 2
    for err, scale, *_ in compare_layers(model, mapped, result, {}):
        assert err <= 4 * bf16_ulp(scale)
    chip = make_chip(cores=4)
    dense = map_model(model, chip, PREFILL, MapOptions())
    sparse = map_model(model, chip, PREFILL, MapOptions(sparsity="2:4"))
    d = sequence([simulate(p, chip) for p in dense.lowered.kernel_programs])
    s = sequence([simulate(p, chip) for p in sparse.lowered.kernel_programs])
    assert s.macs < 0.75 * d.macs


def test_low_rank_matches_numpy_on_the_factors_and_saves_flops():
    model = load_model("tiny-llama")
    opts = MapOptions(functional=True, layers_mapped=None, seed=3, low_rank=8)
    mapped, result, _ = run_functional(model, PREFILL, opts)
    w = dict(mapped.weights)
    for key in [k for k in w if k.endswith(".w.u")]:
        base = key[:-2]
        w[base] = w[key] @ w[base + ".v"]
    for err, scale, *_ in compare_layers(model, mapped, result, {}, w):
        assert err <= 6 * bf16_ulp(scale)
    chip = make_chip(cores=4)
    full = sequence([simulate(p, chip) for p in
                     map_model(model, chip, PREFILL, MapOptions()).lowered.kernel_programs])
    low = sequence([simulate(p, chip) for p in map_model(
        model, chip, PREFILL, MapOptions(low_rank=8)).lowered.kernel_programs])
    assert low.flops < full.flops


def test_fusion_removes_the_epilogue_round_trips():
    model = load_model("tiny-llama")
    chip = make_chip(cores=4)
    fused = map_model(model, chip, PREFILL, MapOptions())
    unfused = map_model(model, chip, PREFILL, MapOptions(fusion=False))
    f = sequence([simulate(p, chip) for p in fused.lowered.kernel_programs])
    u = sequence([simulate(p, chip) for p in unfused.lowered.kernel_programs])
    hidden = PREFILL.tokens * model.hidden * 2  # one bf16 activation [T, H]
    # per layer, two residual adds each write and re-read one activation
    assert u.bytes["hbm_write"] - f.bytes["hbm_write"] >= 2 * hidden
    assert u.time_s > f.time_s


def test_attention_never_writes_scores_to_hbm():
    model = load_model("tiny-llama")
    chip = make_chip(cores=4)
    phase = Phase("prefill", batch=1, seq=48)
    mapped = map_model(model, chip, phase, MapOptions())
    kinds = [k for _, k in mapped.lowered.kernels]
    att = mapped.lowered.kernel_programs[kinds.index("attention")]
    r = simulate(att, chip)
    # only the output: one row of head_dim bf16 values (32 B) per token and head, each
    # charged as one whole 64 B burst; the scores stay in the accumulator
    rows = phase.tokens * model.heads
    assert r.bytes["hbm_write"] == rows * max(64, model.head_dim * 2)
    scores = model.heads * phase.tokens * phase.tokens * 4
    assert r.bytes["hbm_write"] < scores / 2
    assert r.bytes["acc_write"] >= scores / 2  # causal: about half the score tiles


def test_double_buffering_overlaps_dma_with_compute():
    model = load_model("tiny-llama")
    chip = make_chip(cores=1)
    mapped = map_model(model, chip, Phase("prefill", batch=4, seq=32), MapOptions())
    names = [n for n, _ in mapped.lowered.kernels]
    gemm = mapped.lowered.kernel_programs[names.index("l0.down")]  # a plain projection
    r = simulate(gemm, chip)
    busy = r.engines["dma"].busy_s + r.engines["mx"].busy_s
    assert r.time_s < 0.9 * busy  # DMA and matrix engine ran at the same time


def test_bf16_reference_rounding_helper():
    assert bf16(np.array([1.00390625]))[0] == 1.0


def test_tiling_search_confirms_the_best_few_by_simulation():
    from mapper.lower import _alone
    from mapper.lowerings import gemm_of as _gemm
    from mapper.tiling import choose
    from tests.simulator.test_dedupe import gemm_graph

    chip = make_chip(cores=4)
    graph = gemm_graph(96, 256, 160)
    g = _gemm(graph, graph.nodes[0], {}, None)
    ranked = [s.tiling for s in choose(g, chip, 3)]
    times = {t: simulate(_alone(g, t, chip), chip).time_s for t in ranked}
    calls = []

    def confirm(progs):
        calls.append(1)
        return simulate(progs, chip).time_s

    from mapper.lower import lower

    chosen = lower(graph, chip, confirm=confirm, top=3).tilings["lin"]
    assert len(calls) == 3 and chosen == min(times, key=times.get)


def test_mixed_precision_quantizes_only_the_chosen_layers():
    model = load_model("tiny-llama")
    opts = MapOptions(functional=True, layers_mapped=None, seed=3, quant="int8",
                      quant_layers=(1,))
    mapped, result, _ = run_functional(model, PREFILL, opts)
    g = mapped.graph
    assert g.tensors["l0.qkv.w"].dtype.name == "BF16" and g.tensors["l1.qkv.w"].dtype.name == \
        "INT8"
    decoded = {k: decoded_weights(mapped.weights, k) for k in mapped.weights}
    for err, scale, *_ in compare_layers(model, mapped, result, {}, decoded):
        assert err <= 4 * bf16_ulp(scale)


def test_mixed_precision_whole_model_time_combines_both_layer_kinds():
    from experiments.run import run_phase

    model = load_model("tiny-llama")
    chip = make_chip(cores=4)
    full = run_phase(model, chip, PREFILL, MapOptions(quant="int4"))
    none = run_phase(model, chip, PREFILL, MapOptions())
    half = run_phase(model, chip, PREFILL, MapOptions(quant="int4", quant_layers=(0,)))
    assert half.repeat == 1 and half.other_repeat == 1
    per_layer = (full.latency_s - full.head.time_s) / 2, (none.latency_s - none.head.time_s) / 2
    assert half.latency_s == pytest.approx(sum(per_layer) + half.head.time_s)


def test_row_major_weights_compute_the_same_numbers():
    model = load_model("tiny-gpt2")
    mapped, result, _ = run_functional(model, PREFILL, MapOptions(
        functional=True, layers_mapped=None, seed=3, layout="row"))
    assert set(mapped.lowered.layouts.values()) == {"row"}
    for err, scale, *_ in compare_layers(model, mapped, result, {}):
        assert err <= 4 * bf16_ulp(scale)


def test_layout_choice_by_burst_charges(monkeypatch):
    """16-wide bf16 tiles are 32 B per row: row-major pays a 64 B burst per row."""
    import mapper.lower as low
    from mapper.kernels.gemm import Tiling
    from tests.simulator.test_dedupe import gemm_graph

    monkeypatch.setattr(low, "_choose_tilings", lambda *a: {"lin": Tiling(16, 16, 16)})
    chip = make_chip(cores=2)
    graph = gemm_graph(32, 64, 64)
    res = {lay: simulate(low.lower(graph, chip, layout=lay).programs, chip)
           for lay in ("row", "blocked")}
    # W (8 KiB) is read once per row of output tiles (2 rows of 16); row-major charges each
    # 32 B tile row a whole 64 B burst: twice the bytes
    w_bytes = 64 * 64 * 2
    assert res["row"].bytes["hbm_read"] - res["blocked"].bytes["hbm_read"] == 2 * w_bytes
    assert res["row"].time_s > res["blocked"].time_s
    assert low.lower(graph, chip, layout="auto").layouts == {"lin": "blocked"}


def test_rmsnorm_is_fused_into_the_projection_and_saves_a_round_trip():
    model = load_model("tiny-llama")
    chip = make_chip(cores=4)
    fused = map_model(model, chip, PREFILL, MapOptions())
    kinds = [k for _, k in fused.lowered.kernels]
    assert "norm" not in kinds and kinds.count("rms_scale") == 2
    assert fused.notes["fused_norms"] == ["l0.norm1", "l0.norm2"]
    plain = map_model(model, chip, PREFILL, MapOptions(quant="int8"))  # not fused: scales
    assert "norm" in [k for _, k in plain.lowered.kernels]
    f = sequence([simulate(p, chip) for p in fused.lowered.kernel_programs])
    u = sequence([simulate(p, chip) for p in map_model(
        model, chip, PREFILL, MapOptions(fusion=False)).lowered.kernel_programs])
    assert f.bytes["hbm_write"] < u.bytes["hbm_write"]


@pytest.mark.parametrize("scheme, bound", [("int8", 0.03), ("fp8", 0.1), ("fp4", 0.6)])
def test_w8a8_activations_quantized_per_token(scheme, bound):
    model = load_model("tiny-llama")
    base, rb, _ = run_functional(model, PREFILL)
    q, rq, _ = run_functional(model, PREFILL, MapOptions(
        functional=True, layers_mapped=None, seed=3, quant=scheme, act_quant=scheme))
    assert rq.races == ()
    kinds = [k for _, k in q.lowered.kernels]
    assert kinds.count("act_quant") == 4 * model.layers  # every projection's input
    shape = (PREFILL.tokens, model.hidden)
    y0, y1 = read(base, rb, "x2", shape), read(q, rq, "x2", shape)
    assert 0 < np.abs(y1 - y0).max() / np.abs(y0).max() <= bound


def test_w8a8_runs_the_array_at_the_int8_rate():
    model = load_model("tiny-llama")
    chip = make_chip(cores=4)
    w8 = map_model(model, chip, PREFILL, MapOptions(quant="int8"))
    w8a8 = map_model(model, chip, PREFILL, MapOptions(quant="int8", act_quant="int8"))

    def mx_busy(m):
        return sum(simulate(p, chip).engines["mx"].busy_s for (_, k), p in
                   zip(m.lowered.kernels, m.lowered.kernel_programs) if k == "linear")
    assert mx_busy(w8a8) < 0.75 * mx_busy(w8)  # bf16 x int8 runs at the bf16 rate


def test_w4a4_fp4_runs_the_array_at_four_times_the_bf16_rate():
    """fp4 (e2m1) weights and activations: a Blackwell-class array's fp4 rate."""
    model = load_model("tiny-llama")
    chip = make_chip(cores=4)
    bf = map_model(model, chip, PREFILL, MapOptions())
    w4a4 = map_model(model, chip, PREFILL, MapOptions(quant="fp4", act_quant="fp4"))

    def macs_s(m):
        return sum(simulate(p, chip).engines["mx"].busy_s for (_, k), p in
                   zip(m.lowered.kernels, m.lowered.kernel_programs) if k == "linear")
    assert macs_s(w4a4) < 0.5 * macs_s(bf)


def test_gemm_tiles_are_no_narrower_than_the_chips_least_width():
    """``core.array.min_tile_n``: a GPU library never tiles the weight side narrower than
    its MMA's wide side; a GEMM narrower than that keeps its own width."""
    import dataclasses

    from mapper.lowerings import gemm_of as _gemm
    from mapper.tiling import candidates
    from tests.simulator.test_dedupe import gemm_graph

    chip = make_chip(cores=4)
    gpu = dataclasses.replace(chip, core=dataclasses.replace(
        chip.core, array=dataclasses.replace(chip.core.array, min_tile_n=64)))
    wide = gemm_graph(8, 256, 512)
    g = _gemm(wide, wide.nodes[0], {}, None)
    assert min(t.tn for t in candidates(g, chip)) < 64
    assert min(t.tn for t in candidates(g, gpu)) == 64
    narrow = gemm_graph(8, 256, 32)
    assert {t.tn for t in candidates(_gemm(narrow, narrow.nodes[0], {}, None), gpu)} == {32}


def test_a_gemms_loads_carry_the_chips_window_and_a_gemv_over_few_cores_is_bound_by_it():
    """``core.dma.gemm_window``: a GEMM kernel's A and W loads carry the KiB it keeps in
    flight per core, so a GEMV that fills few cores moves at most cores * window / latency
    (Little's law), however fast the HBM; without a window the HBM alone binds."""
    import dataclasses

    from mapper.lower import lower
    from tests.simulator.test_dedupe import gemm_graph

    chip = make_chip(cores=4, clock_hz=1e11)  # the array never binds: the bytes do
    chip = dataclasses.replace(chip, hbm=dataclasses.replace(chip.hbm, bandwidth=1e12))
    windowed = dataclasses.replace(chip, core=dataclasses.replace(
        chip.core, dma=dataclasses.replace(chip.core.dma, gemm_window=4096)))
    graph = gemm_graph(1, 4096, 64)
    low = lower(graph, windowed)
    loads = [i for p in low.programs.values() for i in p.instructions
             if i.spec.mnemonic == "dma.load"]
    assert loads and all(i["window"] == 4 for i in loads if i["rows"] * i["cols"] > 1)
    free = simulate(lower(graph, chip).programs, chip).time_s
    bound = simulate(low.programs, windowed).time_s
    w_bytes = 2 * 4096 * 64
    assert bound > 1.5 * free
    assert bound >= w_bytes / (4 * 4096 / chip.core.dma.latency)
