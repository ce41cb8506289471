"""Today's models: DeepSeek-V3 (MLA, shared + routed experts), Qwen3 (qk-norm, MoE), Llama
3.1 405B, sliding windows. Parameter counts and KV bytes against their closed forms and
published figures; MLA and qk-norm computed on the simulated chip against numpy."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from experiments import api
from experiments.functional_check import check
from mapper.footprint import footprint
from mapper.layers import Phase, build_layers
from mapper.model import ModelError, load_model, model_from_dict
from mapper.ops import Op
from mapper.pipeline import MapOptions

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize("name, total, active", [
    ("deepseek-v3", 671e9, 37e9),  # DeepSeek-V3 report: 671 B total, 37 B activated
    ("qwen3-235b-a22b", 235e9, 22e9),
    ("qwen3-32b", 32.8e9, 32.8e9),
    ("llama3.1-405b", 405e9, 405e9),
])
def test_parameter_counts_match_published(name, total, active):
    m = load_model(name)
    assert m.params == pytest.approx(total, rel=0.01)
    assert m.active_params == pytest.approx(active, rel=0.03)


def test_deepseek_v3_with_its_mtp_module_is_the_published_685b():
    m = dataclasses.replace(load_model("deepseek-v3"), mtp_layers=1)
    assert m.params_total == pytest.approx(685e9, rel=0.01)


@pytest.mark.parametrize("hf, preset", [
    ("deepseek-v3.json", "deepseek-v3"), ("qwen3-32b.json", "qwen3-32b"),
    ("qwen3-235b-a22b.json", "qwen3-235b-a22b"), ("llama-3.1-405b.json", "llama3.1-405b"),
])
def test_hugging_face_configs_map_to_the_presets(hf, preset):
    a, b = load_model(DATA / hf), load_model(preset)
    fields = [f.name for f in dataclasses.fields(a) if f.name not in ("name", "ffn",
                                                                       "mtp_layers")]
    assert {f: getattr(a, f) for f in fields} == {f: getattr(b, f) for f in fields}
    assert a.params == b.params


def test_mistral_sliding_window_is_read_from_its_config():
    m = load_model(DATA / "mistral-7b-v0.1.json")
    assert m.sliding_window == 4096
    assert m.params == pytest.approx(7.24e9, rel=0.01)


def test_mla_kv_bytes_per_token_is_one_latent_and_one_rotary_key_per_layer():
    m = load_model("deepseek-v3")
    assert m.kv_bytes_per_token() == 61 * (512 + 64) * 2  # 70,272 B: the paper's ~70 KB
    gqa = load_model("llama3.1-405b")
    assert gqa.kv_bytes_per_token() == 126 * 2 * 8 * 128 * 2
    # the graph's cache tensor holds exactly that per token and layer
    g = build_layers(m, Phase("decode", 3, ctx=99), 1)
    caches = [t for t in g.tensors.values() if t.kind.value == "kv_cache"]
    assert sum(t.nbytes for t in caches) == 3 * 100 * (512 + 64) * 2
    # ... and the footprint of a decode batch counts it for every layer
    fp = footprint(m, Phase("decode", 8, ctx=4095), MapOptions(), dp=1)
    assert fp.kv_cache == 8 * 4096 * m.kv_bytes_per_token()


def test_footprint_counts_dense_and_moe_layers_apart():
    m = load_model("deepseek-v3")
    fp = footprint(m, Phase("decode", 1, ctx=1), MapOptions())
    emb_head = 2 * m.vocab * m.hidden * 2
    layers = sum(m.layer_params(i) for i in range(m.layers)) * 2
    # bf16 weights; the MoE routers' logits projection is the only difference (no bias)
    assert fp.weights == pytest.approx(layers + emb_head, rel=1e-3)


@pytest.mark.parametrize("name, kw", [
    ("tiny-qwen3", {}),
    ("tiny-deepseek", dict(experts=0, experts_per_token=0, shared_experts=0, dense_layers=0)),
])
@pytest.mark.parametrize("phase, extra", [("prefill", dict(seq=16)), ("decode", dict(ctx=8))])
def test_mla_and_qk_norm_compute_what_numpy_computes(name, kw, phase, extra):
    """The simulated chip runs MLA absorbed (latent cache, per-head W_UK / W_UV batched
    GEMMs, MQA over the latent); numpy runs it as DeepSeek-V2 defines it (keys and values
    decompressed per head). They agree within bf16 rounding."""
    m = dataclasses.replace(load_model(name), **kw)
    r = api.run(model=m, chip="edge", phase=phase, batch=2, functional=True, **extra)
    found = check(m, r.prefill or r.decode[0])
    assert found["ulps"] <= 4.0


def test_mla_decode_reads_the_latent_once_per_key_tile():
    """FlashMLA's values are the latent tile already loaded for the scores: the attention
    kernel loads no separate V."""
    m = load_model("tiny-deepseek")
    g = build_layers(m, Phase("decode", 2, ctx=63), 1)
    att = [n for n in g.nodes if n.op == Op.ATTENTION]
    assert len(att) == 1 and att[0].attrs.rope_dim == m.rope_dim
    assert len(att[0].inputs) == 3  # absorbed q, rotary q, the one latent cache


def test_partial_stacks_price_the_majority_layer_kind():
    m = load_model("deepseek-v3")
    assert m.priced_moe(1) == [True]  # 58 of 61 layers are MoE
    assert m.priced_moe(m.layers)[:4] == [False, False, False, True]


@pytest.mark.parametrize("text, message", [
    ("kv_lora_rank: 64\nrope_dim: 15\n", "rope_dim: MLA needs an even rotary part"),
    ("kv_lora_rank: 64\nrope_dim: 16\nkv_heads: 2\n", "kv_heads: MLA expands"),
    ("rope_dim: 16\n", "need kv_lora_rank > 0"),
    ("dense_layers: 9\n", "dense_layers: 9 exceeds layers (2)"),
    ("shared_experts: 1\n", "shared_experts: needs routed experts"),
    ("experts: 4\nexperts_per_token: 2\nexpert_load: [1, 2]\n", "expert_load: 2 fractions"),
])
def test_new_model_fields_are_checked(tmp_path, text, message):
    base = "name: x\nhidden: 64\nlayers: 2\nheads: 4\nffn: 8\nvocab: 8\nmax_seq: 8\n"
    f = tmp_path / "m.yaml"
    f.write_text(base + text)
    with pytest.raises(ModelError, match=re.escape(message)):
        load_model(f)


def test_sliding_window_limits_the_keys_each_query_reads():
    base = dict(name="w", hidden=64, layers=1, heads=4, kv_heads=2, ffn=128, vocab=64,
                max_seq=4096)
    full = model_from_dict(base)
    local = model_from_dict({**base, "sliding_window": 256})
    chip = api.chip("h100")
    from mapper.pipeline import map_model
    from simulator.run import simulate

    def attn_bytes(model):
        mapped = map_model(model, chip, Phase("decode", 4, ctx=2047), MapOptions())
        k = [p for (_, kind), p in zip(mapped.lowered.kernels,
                                      mapped.lowered.kernel_programs) if kind == "attention"]
        return sum(simulate(p, chip).bytes["hbm_read"] + simulate(p, chip).bytes["l2_read"]
                   for p in k)
    assert attn_bytes(local) < 0.2 * attn_bytes(full)  # 256 of 2048 keys


def test_a_sliding_window_caps_the_decode_cache_at_the_window():
    m = load_model(DATA / "mistral-7b-v0.1.json")
    long = footprint(m, Phase("decode", 8, ctx=16000), MapOptions())
    short = footprint(m, Phase("decode", 8, ctx=1000), MapOptions())
    assert long.kv_cache == 8 * 4096 * m.kv_bytes_per_token()  # the window, not 16,001
    assert short.kv_cache == 8 * 1001 * m.kv_bytes_per_token()


def test_mla_prefill_attends_per_head_not_in_latent_space():
    """A prompt runs DeepSeek's naive form (keys and values decompressed per head: 192-wide
    scores, 128-wide values) rather than attending over the 576-wide latent: the attention
    kernel's matrix work drops about 3.4x."""
    from mapper.pipeline import map_model
    from simulator.run import simulate

    m = dataclasses.replace(load_model("deepseek-v3"), layers=1, dense_layers=1, experts=0,
                            experts_per_token=0, shared_experts=0, heads=16, kv_heads=16)
    chip = api.chip("h100")

    def attention_macs(phase):
        mapped = map_model(m, chip, phase, MapOptions())
        progs = [p for (_, kind), p in zip(mapped.lowered.kernels,
                                          mapped.lowered.kernel_programs) if kind == "attention"]
        return sum(simulate(p, chip).macs for p in progs)
    naive = attention_macs(Phase("prefill", 1, seq=512))
    absorbed = attention_macs(Phase("chunk", 1, seq=512, ctx=0))  # the same prompt, absorbed
    # (512 + 64 + 512) / (128 + 64 + 128) = 3.4 on whole tiles; the diagonal tiles of the
    # two forms' different tile sizes pad differently
    assert 2.8 < absorbed / naive < 3.6


def test_functional_mode_refuses_a_context_past_the_sliding_window():
    m = model_from_dict(dict(name="w", hidden=64, layers=1, heads=4, kv_heads=2, ffn=128,
                             vocab=64, max_seq=4096, sliding_window=16))
    with pytest.raises(api.ApiError, match="past its sliding window"):
        api.run(model=m, chip="edge", phase="prefill", batch=1, seq=32, functional=True)
    assert api.run(model=m, chip="edge", phase="prefill", batch=1, seq=12, functional=True)
