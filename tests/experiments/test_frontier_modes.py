"""Every new model and chip in every mode: each model preset, reduced to a few small layers
with its structure kept (MLA, shared + routed experts, leading dense layers, qk-norm), runs
prefill, decode, serve and train (where its backward is modelled); each new chip runs a
small model; each new system maps a MoE model with expert parallelism."""

from __future__ import annotations

import dataclasses

import pytest

from experiments import api
from experiments.train.step import TrainSpec, train_step
from mapper.model import load_model

NEW_MODELS = ("deepseek-v3", "qwen3-32b", "qwen3-235b-a22b", "llama3.1-405b")


def reduced(name: str):  # noqa: ANN201
    """The preset shrunk to 2 layers of width 128, every structural feature kept."""
    m = load_model(name)
    kw = dict(hidden=128, layers=2, heads=4, kv_heads=4 if m.kv_heads == m.heads else 2,
              head_dim=32, ffn=256, vocab=512, max_seq=1024)
    if m.experts:
        kw.update(experts=8, experts_per_token=2, moe_ffn=64,
                  dense_layers=min(m.dense_layers, 1))
    if m.mla:
        kw.update(q_lora_rank=64, kv_lora_rank=64, rope_dim=16, v_head_dim=32)
    return dataclasses.replace(m, name=f"{name}-reduced", **kw)


@pytest.mark.parametrize("name", NEW_MODELS)
def test_reduced_models_run_prefill_decode_and_serve(name):
    m = reduced(name)
    pre = api.run(model=m, chip="h100", phase="prefill", batch=2, seq=64)
    dec = api.run(model=m, chip="h100", phase="decode", batch=4, ctx=128)
    # a prompt's 128 tokens go through at a far higher rate than 4 decode tokens
    assert 128 / pre.prefill.latency_s > 10 * 4 / dec.decode[0].latency_s > 0
    summary, rows = api.serve(m, "h100", rate=50.0, requests=12, prompt_len="64",
                              output_len="8", seed=1, chunk=256, max_seqs=16)
    assert summary["requests"] == 12 and len(rows) == 12 and summary["ttft_p50_s"] > 0


@pytest.mark.parametrize("name", NEW_MODELS)
def test_reduced_models_train(name):
    """Forward, backward and optimizer of each (MLA as its training stack runs it:
    concatenated heads, values padded, one flash-attention backward)."""
    m = reduced(name)
    rep = train_step(m, TrainSpec(micro_batch=2, seq=64, global_batch=4), api.chip("h100"))
    assert rep.step_s > 0 and rep.memory.total > 0


def test_mla_training_backward_is_a_flash_attention_backward_of_head_size_192():
    from mapper.backward import training_graph
    from mapper.layers import Phase
    from mapper.ops import Op

    m = reduced("deepseek-v3")
    g = training_graph(m, Phase("prefill", 2, seq=64), 1)
    bwd = [n for n in g.nodes if n.op == Op.ATTENTION_BWD]
    assert len(bwd) == 1
    assert g.tensors[bwd[0].inputs[1]].shape[3] == m.head_dim + m.rope_dim


@pytest.mark.parametrize("chip", ["b200", "mi300x", "tpu-v5p"])
def test_new_chips_run_prefill_decode_serve_and_train(chip):
    m = reduced("qwen3-235b-a22b")
    pre = api.run(model=m, chip=chip, phase="prefill", batch=1, seq=32)
    dec = api.run(model=m, chip=chip, phase="decode", batch=2, ctx=64)
    assert pre.prefill.latency_s > 0 and dec.decode[0].latency_s > 0
    summary, _ = api.serve(m, chip, rate=50.0, requests=8, prompt_len="32", output_len="4",
                           seed=2, chunk=128, max_seqs=8)
    assert summary["requests"] == 8
    rep = train_step(m, TrainSpec(micro_batch=1, seq=32, global_batch=1), api.chip(chip))
    assert rep.step_s > 0


def test_b200_runs_fp4_weights_and_activations_faster_than_bf16():
    m = dataclasses.replace(reduced("llama3.1-405b"), hidden=512, ffn=2048, heads=4,
                            kv_heads=2, head_dim=128)
    bf = api.run(model=m, chip="b200", phase="prefill", batch=4, seq=256)
    fp4 = api.run(model=m, chip="b200", phase="prefill", batch=4, seq=256, quant="fp4",
                  act_quant="fp4")

    def gemm_s(run):  # the projections' kernels (W4A4 adds small quantize kernels)
        return sum(r.time_s for (_, kind), r in zip(run.prefill.mapped.lowered.kernels,
                                                    run.prefill.kernels) if kind == "linear")
    assert gemm_s(fp4) < 0.8 * gemm_s(bf)


def test_expert_parallel_moe_on_the_72_gpu_domain_reports_memory_per_chip():
    m = reduced("deepseek-v3")
    m = dataclasses.replace(m, experts=72, experts_per_token=4)
    nvl72 = api.system("gb200-nvl72", {"cores": 8})  # 72 chips of 8 cores (test time)
    r = api.run(model=m, system=nvl72, phase="decode", batch=144, ctx=256, dp=72, ep=72)
    mem = r.notes["memory_per_chip"]
    assert r.decode[0].latency_s > 0
    assert 0 < mem["total_bytes"] < mem["hbm_bytes"]
    assert mem["kv_cache_bytes"] == 2 * 257 * m.kv_bytes_per_token()  # 2 sequences a chip


@pytest.mark.parametrize("system, par", [("mi300x-x8", dict(tp=8)),
                                         ("tpu-v5p-4x4x4", dict(tp=4, dp=16)),
                                         ("h200x8", dict(dp=8, ep=8))])
def test_new_systems_map_a_split_model(system, par):
    m = reduced("qwen3-235b-a22b") if "ep" in par else reduced("llama3.1-405b")
    m = dataclasses.replace(m, heads=8, kv_heads=8)
    r = api.run(model=m, system=system, phase="decode", batch=16, ctx=128, **par)
    assert r.decode[0].latency_s > 0
