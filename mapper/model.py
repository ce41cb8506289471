"""Transformer model descriptions: presets, YAML files and Hugging Face ``config.json``.

A ``ModelConfig`` is all the mapper needs to build the graph of a layer. Every error in a
model file is one line naming the file and the field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from hardware.loader import from_dict, resolve, spec
from hardware.yamlfile import read_yaml
from isa.dtypes import DType
from isa.errors import TesseraError

PRESETS = Path(__file__).parent / "presets"


class ModelError(TesseraError):
    """A model description is wrong; the message names the file and field."""


class Arch(Enum):
    DECODER = "decoder"
    ENCODER = "encoder"


class Mlp(Enum):
    GELU = "gelu"
    SWIGLU = "swiglu"


class Norm(Enum):
    LAYERNORM = "layernorm"
    RMSNORM = "rmsnorm"


class Position(Enum):
    ROPE = "rope"
    LEARNED = "learned"


def _count(help: str) -> dict:  # noqa: A002
    """A whole number >= 0 (those that must be positive are checked with the model)."""
    return spec(bounds="non_negative", help=help)


@dataclass(frozen=True)
class ModelConfig:
    name: str
    hidden: int = field(metadata=_count("model width d_model"))
    layers: int = field(metadata=_count("decoder / encoder layers"))
    heads: int = field(metadata=_count("query heads"))
    ffn: int = field(metadata=_count("MLP hidden size (per expert)"))
    vocab: int = field(metadata=_count("vocabulary size"))
    max_seq: int = field(metadata=_count("positions the model was trained for"))
    arch: Arch = Arch.DECODER
    kv_heads: int = field(default=0, metadata=_count("0: = heads (multi-head attention)"))
    head_dim: int = field(default=0, metadata=_count("0: hidden // heads"))
    mlp: Mlp = Mlp.SWIGLU
    norm: Norm = Norm.RMSNORM
    position: Position = Position.ROPE
    rope_theta: float = field(default=10000.0, metadata=spec(help="rotary base"))
    norm_eps: float = field(default=1e-5, metadata=spec(help="added to the variance"))
    bias: bool = False
    tied_embeddings: bool = False
    experts: int = field(default=0, metadata=_count("routed experts (0: dense MLP)"))
    experts_per_token: int = field(default=0, metadata=_count("experts each token visits"))
    dtype: str = "bf16"

    def __post_init__(self) -> None:
        if not self.kv_heads:
            object.__setattr__(self, "kv_heads", self.heads)
        if not self.head_dim and self.heads:  # heads = 0 is reported by validation
            object.__setattr__(self, "head_dim", self.hidden // self.heads)

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    @property
    def params_per_layer(self) -> int:
        h = self.hidden
        attn = h * (self.q_dim + 2 * self.kv_dim) + self.q_dim * h
        mats = 3 if self.mlp is Mlp.SWIGLU else 2
        mlp = mats * h * self.ffn * max(1, self.experts) + (h * self.experts if self.experts
                                                            else 0)
        norms = 2 * h * (2 if self.norm is Norm.LAYERNORM else 1)
        bias = (self.q_dim + 2 * self.kv_dim + h + self.ffn * (mats - 1) + h) if self.bias else 0
        return attn + mlp + norms + bias

    @property
    def params(self) -> int:
        emb = self.vocab * self.hidden
        pos = self.max_seq * self.hidden if self.position is Position.LEARNED else 0
        head = 0 if self.tied_embeddings else self.vocab * self.hidden
        final = self.hidden * (2 if self.norm is Norm.LAYERNORM else 1)
        return self.layers * self.params_per_layer + emb + pos + head + final

    def kv_bytes_per_token(self, dtype_bytes: int = 2) -> int:
        return 2 * self.layers * self.kv_dim * dtype_bytes


def list_models() -> list[str]:
    return sorted(p.stem for p in PRESETS.glob("*.yaml"))


def load_model(name_or_path: str | Path) -> ModelConfig:
    """A preset name, a model YAML file, or a Hugging Face ``config.json``."""
    path = resolve(name_or_path, PRESETS, "model", ModelError, (".yaml", ".yml", ".json"))
    if path.suffix == ".json":
        return model_from_hf(_read_json(path), path.name)
    data = read_yaml(path, ModelError)
    return model_from_dict(data, path.name)


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path.name}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}"
                         ) from None
    except RecursionError:
        raise ModelError(f"{path.name}: invalid JSON (nested too deeply)") from None
    except ValueError as exc:  # a number json refuses to convert (over 4300 digits)
        raise ModelError(f"{path.name}: invalid JSON value ({str(exc).split(':')[0]})"
                         ) from None
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ModelError(f"{path.name}: cannot read ({why})") from None


def model_from_dict(data: object, source: str = "<dict>") -> ModelConfig:
    if not isinstance(data, dict):
        raise ModelError(f"{source}: expected a mapping of model fields at the top level")
    model = from_dict(ModelConfig, data, source, ModelError)
    _validate(model, source)
    return model


def _validate(m: ModelConfig, source: str) -> None:
    for name in ("hidden", "layers", "heads", "ffn", "vocab", "max_seq"):
        if getattr(m, name) <= 0:
            raise ModelError(f"{source}: {name}: must be positive, got {getattr(m, name)}")
    if m.head_dim <= 0:
        raise ModelError(f"{source}: head_dim: must be positive (hidden {m.hidden} < heads "
                         f"{m.heads}?)")
    if m.heads % m.kv_heads:
        raise ModelError(f"{source}: kv_heads: {m.kv_heads} does not divide heads ({m.heads})")
    if m.head_dim % 2 and m.position is Position.ROPE:
        raise ModelError(f"{source}: head_dim: rotary embedding needs an even head_dim")
    if m.experts_per_token > m.experts:
        raise ModelError(f"{source}: experts_per_token: {m.experts_per_token} exceeds experts "
                         f"({m.experts})")
    try:
        DType.parse(m.dtype)
    except ValueError as exc:
        raise ModelError(f"{source}: dtype: {exc}") from None


def _show(value: object) -> str:
    """A value for a message: a huge integer by its size, not its 4000 digits."""
    if isinstance(value, int) and value.bit_length() > 64:
        return f"an integer of {value.bit_length()} bits"
    return repr(value)


# ---- Hugging Face config.json --------------------------------------------------------------

def model_from_hf(cfg: object, source: str = "config.json") -> ModelConfig:
    """Map a Hugging Face config (GPT-2, LLaMA, Mistral, Mixtral, BERT) to a ModelConfig."""
    if not isinstance(cfg, dict):
        raise ModelError(f"{source}: expected a JSON object")
    kind = cfg.get("model_type")
    mapper = _HF.get(kind) if isinstance(kind, str) else None
    if mapper is None:
        raise ModelError(f"{source}: model_type: unsupported '{kind}' (supported: "
                         f"{', '.join(sorted(_HF))})")
    try:
        fields = mapper(cfg)
    except KeyError as exc:
        raise ModelError(f"{source}: {exc.args[0]}: missing key") from None
    except _BadKey as exc:
        raise ModelError(f"{source}: {exc.args[0]}: expected a positive integer, got "
                         f"{_show(cfg[exc.args[0]])}") from None
    fields.setdefault("name", Path(source).stem)
    return model_from_dict(fields, source)


class _BadKey(Exception):
    """A Hugging Face key whose value a mapper must compute with is not an integer."""


def _int(c: dict, key: str) -> int:
    value = c[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise _BadKey(key)
    return value


def _gpt2(c: dict) -> dict:
    return dict(arch="decoder", hidden=c["n_embd"], layers=c["n_layer"], heads=c["n_head"],
                ffn=c.get("n_inner") or 4 * _int(c, "n_embd"), vocab=c["vocab_size"],
                max_seq=c["n_positions"], mlp="gelu", norm="layernorm", position="learned",
                norm_eps=c.get("layer_norm_epsilon", 1e-5), bias=True, tied_embeddings=True)


def _llama(c: dict) -> dict:
    out = dict(arch="decoder", hidden=c["hidden_size"], layers=c["num_hidden_layers"],
               heads=c["num_attention_heads"],
               kv_heads=c.get("num_key_value_heads") or c["num_attention_heads"],
               ffn=c["intermediate_size"], vocab=c["vocab_size"],
               max_seq=c["max_position_embeddings"], mlp="swiglu", norm="rmsnorm",
               position="rope", rope_theta=c.get("rope_theta", 10000.0),
               norm_eps=c.get("rms_norm_eps", 1e-6), bias=False,
               tied_embeddings=bool(c.get("tie_word_embeddings", False)))
    if c.get("head_dim"):
        out["head_dim"] = c["head_dim"]
    if c.get("num_local_experts"):
        out["experts"] = c["num_local_experts"]
        out["experts_per_token"] = c["num_experts_per_tok"]
    return out


def _bert(c: dict) -> dict:
    return dict(arch="encoder", hidden=c["hidden_size"], layers=c["num_hidden_layers"],
                heads=c["num_attention_heads"], ffn=c["intermediate_size"],
                vocab=c["vocab_size"], max_seq=c["max_position_embeddings"], mlp="gelu",
                norm="layernorm", position="learned", norm_eps=c.get("layer_norm_eps", 1e-12),
                bias=True, tied_embeddings=True)


_HF = {"gpt2": _gpt2, "llama": _llama, "mistral": _llama, "mixtral": _llama, "bert": _bert}
