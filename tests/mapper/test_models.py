"""Model descriptions: presets, Hugging Face configs, parameter counts, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mapper.model import ModelError, list_models, load_model

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize("name, params", [
    ("llama2-7b", 6.74e9), ("llama3-8b", 8.03e9), ("llama3-70b", 70.55e9),
    ("gpt3-175b", 174.6e9), ("gpt2-xl", 1.558e9), ("mixtral-8x7b", 46.7e9),
    ("bert-large", 0.334e9),  # without the pooler and token-type embeddings (336M with them)
])
def test_parameter_counts_match_published(name, params):
    assert load_model(name).params == pytest.approx(params, rel=0.01)


@pytest.mark.parametrize("hf, preset", [
    ("gpt2-xl.json", "gpt2-xl"), ("llama-2-7b.json", "llama2-7b"),
    ("meta-llama-3-8b.json", "llama3-8b"), ("bert-large-uncased.json", "bert-large"),
    ("mixtral-8x7b.json", "mixtral-8x7b"),
])
def test_hugging_face_config_maps_to_the_preset(hf, preset):
    a, b = load_model(DATA / hf), load_model(preset)
    for field in ("hidden", "layers", "heads", "kv_heads", "head_dim", "ffn", "mlp", "norm",
                  "position", "vocab", "max_seq", "bias", "arch", "experts"):
        assert getattr(a, field) == getattr(b, field), field


def test_every_preset_loads():
    assert {"gpt2-xl", "gpt3-175b", "llama2-7b", "llama3-8b", "llama3-70b", "bert-large",
            "tiny-llama", "tiny-gpt2"} <= set(list_models())


def test_a_preset_named_with_n_layers_is_its_first_n_layers():
    """``llama3-70b-4l`` (how a measured stack of 4 of the 80 layers is named): the same
    layer, embedding and head, 4 layers; more layers than the preset's is a one-line error."""
    whole, four = load_model("llama3-70b"), load_model("llama3-70b-4l")
    assert four.layers == 4 and four.name == "llama3-70b-4l"
    assert (four.hidden, four.heads, four.kv_heads, four.ffn, four.vocab) == \
        (whole.hidden, whole.heads, whole.kv_heads, whole.ffn, whole.vocab)
    head_and_embedding = 2 * whole.vocab * whole.hidden  # untied in llama3
    assert head_and_embedding < four.params < head_and_embedding + whole.params / 19
    with pytest.raises(ModelError, match="llama3-70b has 80 layers, not 81"):
        load_model("llama3-70b-81l")
    with pytest.raises(ModelError, match="unknown model preset 'nope-4l'"):
        load_model("nope-4l")


@pytest.mark.parametrize("text, message", [
    ("name: x\nhidden: 64\nlayers: 2\nheads: 4\nkv_heads: 3\nffn: 8\nvocab: 8\nmax_seq: 8\n",
     "m.yaml: kv_heads: 3 does not divide heads (4)"),
    ("name: x\nhidden: 64\nlayers: -2\nheads: 4\nffn: 8\nvocab: 8\nmax_seq: 8\n",
     "m.yaml: layers: must be a non-negative integer, got -2"),
    ("name: x\nhidden: 64\nlayers: 2\nheads: 4\nffn: 8\nvocab: 8\nmax_seq: 8\nmlp: relu\n",
     "m.yaml: mlp: expected one of gelu, swiglu, got 'relu'"),
    ("name: x\nhidden: 64\nlayrs: 2\n", "m.yaml: layrs: unknown field"),
    ("name: x\nhidden: 64\n", "m.yaml: layers: missing required field"),
    ("name: [x\n", "m.yaml:"),
])
def test_yaml_errors_name_file_and_field(tmp_path, text, message):
    f = tmp_path / "m.yaml"
    f.write_text(text)
    with pytest.raises(ModelError) as info:
        load_model(f)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_hf_errors(tmp_path):
    f = tmp_path / "config.json"
    f.write_text('{"model_type": "t5"}')
    with pytest.raises(ModelError, match="config.json: model_type: unsupported 't5'"):
        load_model(f)
    f.write_text('{"model_type": "llama", "hidden_size": 64}')
    with pytest.raises(ModelError, match="config.json: num_hidden_layers: missing key"):
        load_model(f)
    f.write_text('{"model_type": ')
    with pytest.raises(ModelError, match=r"config.json:1:\d+: invalid JSON"):
        load_model(f)


def test_unknown_preset():
    with pytest.raises(ModelError, match="unknown model preset 'llama9' .*llama2-7b"):
        load_model("llama9")


SEEDS = [(DATA / "llama-2-7b.json").read_text(),
         (Path(__file__).parents[2] / "mapper" / "presets" / "tiny-gpt2.yaml").read_text()]


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_fuzzed_model_files_only_raise_model_error(tmp_path_factory, data):
    which = data.draw(st.integers(0, 1))
    text = SEEDS[which]
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(text)))
        text = text[:pos] + data.draw(st.sampled_from(
            ["", "-", "0", "x", "{", "}", "[", ",", ":", '"', "null", "1e400", "\n", "true"])) \
            + text[pos + data.draw(st.integers(0, 6)):]
    f = tmp_path_factory.mktemp("m") / ("config.json" if which == 0 else "model.yaml")
    f.write_text(text)
    try:
        load_model(f)
    except ModelError:
        pass

