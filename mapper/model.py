"""Transformer model descriptions: presets, YAML files and Hugging Face ``config.json``.

A ``ModelConfig`` is all the mapper needs to build the graph of a layer. Every error in a
model file is one line naming the file and the field.
"""

from __future__ import annotations

import dataclasses
import json
import re
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
    # DeepSeek / Qwen3 MoE: per-expert width, always-on shared experts, leading dense layers
    moe_ffn: int = field(default=0, metadata=_count("hidden size of each expert (0: ffn)"))
    shared_experts: int = field(default=0, metadata=_count("experts every token visits"))
    dense_layers: int = field(default=0, metadata=_count(
        "leading layers with a dense MLP of ffn (DeepSeek's first_k_dense_replace)"))
    # multi-head latent attention (DeepSeek-V2/V3): kv_lora_rank > 0 turns it on
    q_lora_rank: int = field(default=0, metadata=_count("MLA query compression (0: none)"))
    kv_lora_rank: int = field(default=0, metadata=_count("MLA latent width (0: not MLA)"))
    rope_dim: int = field(default=0, metadata=_count("MLA rotary part of q and k per head"))
    v_head_dim: int = field(default=0, metadata=_count("value head size (0: head_dim)"))
    qk_norm: bool = False  # Qwen3: RMSNorm over each query and key head before RoPE
    sliding_window: int = field(default=0, metadata=_count(
        "keys each query sees (Mistral / Gemma local attention; 0: all)"))
    mtp_layers: int = field(default=0, metadata=_count(
        "multi-token prediction modules (counted in params_total, not run)"))
    # routing (mapper.routing): a workload fact more than a model one, so run, serve and
    # train take --expert-skew / --capacity-factor too
    expert_skew: float = field(default=0.0, metadata=spec(
        bounds="non_negative", help="Zipf exponent of expert popularity (0: uniform)"))
    expert_load: tuple[float, ...] = ()  # measured share of each expert (overrides skew)
    capacity_factor: float = field(default=0.0, metadata=spec(
        bounds="non_negative", help="slots an expert keeps, x the even share (0: no cap)"))

    def __post_init__(self) -> None:
        if not self.kv_heads:
            object.__setattr__(self, "kv_heads", self.heads)
        if not self.head_dim and self.heads:  # heads = 0 is reported by validation
            object.__setattr__(self, "head_dim", self.hidden // self.heads)
        if not self.v_head_dim:
            object.__setattr__(self, "v_head_dim", self.head_dim)
        if not self.moe_ffn:
            object.__setattr__(self, "moe_ffn", self.ffn)

    @property
    def mla(self) -> bool:
        return self.kv_lora_rank > 0

    @property
    def qk_dim(self) -> int:
        """Size of one head's query / key (MLA: the no-rotary part plus the rotary part)."""
        return self.head_dim + (self.rope_dim if self.mla else 0)

    def is_moe(self, layer: int) -> bool:
        return bool(self.experts) and layer >= self.dense_layers

    def priced_moe(self, layers: int, first: int = 0) -> list[bool]:
        """Which of ``layers`` built layers are MoE. A partial stack (the representative
        layers performance mode maps) takes the kind most of the model's layers have, so
        ``layers x`` its cost prices the model's majority; memory counts each kind apart
        (``layer_params``)."""
        if layers + first >= self.layers or not self.dense_layers:
            return [self.is_moe(li) for li in range(first, first + layers)]
        majority = bool(self.experts) and 2 * self.dense_layers < self.layers
        return [majority] * layers

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    def attn_params(self) -> int:
        h, nh = self.hidden, self.heads
        if self.mla:
            qk = self.qk_dim
            q = (h * self.q_lora_rank + self.q_lora_rank + self.q_lora_rank * nh * qk
                 if self.q_lora_rank else h * nh * qk)
            kv = h * (self.kv_lora_rank + self.rope_dim) + self.kv_lora_rank + \
                self.kv_lora_rank * nh * (self.head_dim + self.v_head_dim)
            return q + kv + nh * self.v_head_dim * h
        attn = h * (self.q_dim + 2 * self.kv_dim) + self.q_dim * h
        if self.qk_norm:
            attn += 2 * self.head_dim
        if self.bias:
            attn += self.q_dim + 2 * self.kv_dim + h
        return attn

    def mlp_params(self, moe: bool) -> int:
        h = self.hidden
        mats = 3 if self.mlp is Mlp.SWIGLU else 2
        if not moe:
            return mats * h * self.ffn + ((self.ffn + h) if self.bias else 0)
        experts = self.experts + self.shared_experts
        return mats * h * self.moe_ffn * experts + h * self.experts

    def layer_params(self, layer: int) -> int:
        norms = 2 * self.hidden * (2 if self.norm is Norm.LAYERNORM else 1)
        return self.attn_params() + self.mlp_params(self.is_moe(layer)) + norms

    @property
    def params_per_layer(self) -> int:
        """Parameters of an average layer (layers differ when some are dense, some MoE)."""
        return round(sum(self.layer_params(i) for i in range(self.layers)) / self.layers)

    @property
    def params(self) -> int:
        """Parameters of the model as run (embedding, layers, head; MTP modules left out)."""
        emb = self.vocab * self.hidden
        pos = self.max_seq * self.hidden if self.position is Position.LEARNED else 0
        head = 0 if self.tied_embeddings else self.vocab * self.hidden
        final = self.hidden * (2 if self.norm is Norm.LAYERNORM else 1)
        return sum(self.layer_params(i) for i in range(self.layers)) + emb + pos + head + final

    @property
    def params_total(self) -> int:
        """``params`` plus the multi-token prediction modules (DeepSeek-V3's published
        685 B counts one: a MoE layer, its 2H x H projection, two norms, its own copies of
        the embedding and head)."""
        mtp = self.layer_params(self.layers - 1) + 2 * self.hidden * self.hidden + \
            3 * self.hidden + 2 * self.vocab * self.hidden
        return self.params + self.mtp_layers * mtp

    @property
    def active_params(self) -> int:
        """Parameters one token's forward pass reads (routed experts: the k it visits)."""
        if not self.experts:
            return self.params
        mats = 3 if self.mlp is Mlp.SWIGLU else 2
        idle = mats * self.hidden * self.moe_ffn * (self.experts - self.experts_per_token)
        return self.params - idle * sum(self.is_moe(i) for i in range(self.layers))

    def kv_bytes_per_token(self, dtype_bytes: int = 2) -> int:
        """KV cache bytes of one token over all layers: K and V of every KV head, or MLA's
        one compressed latent and shared rotary key per layer."""
        per_layer = self.kv_lora_rank + self.rope_dim if self.mla else 2 * self.kv_dim
        return self.layers * per_layer * dtype_bytes


def list_models() -> list[str]:
    return sorted(p.stem for p in PRESETS.glob("*.yaml"))


# ``<preset>-<N>l``: the preset cut to its first N layers (llama3-70b-4l, a stack that fits
# one GPU and behaves, layer for layer, as the whole model does)
_FIRST_LAYERS = re.compile(r"^(?P<base>.+)-(?P<n>[1-9][0-9]*)l$")


def load_model(name_or_path: str | Path) -> ModelConfig:
    """A preset name, a model YAML file, or a Hugging Face ``config.json``; or a preset name
    ending in ``-<N>l`` for its first N layers."""
    cut = _FIRST_LAYERS.match(str(name_or_path))
    if cut and not (PRESETS / f"{name_or_path}.yaml").exists() \
            and (PRESETS / f"{cut['base']}.yaml").exists():
        model = load_model(cut["base"])
        n = int(cut["n"])
        if n > model.layers:
            raise ModelError(f"{name_or_path}: {cut['base']} has {model.layers} layers, "
                             f"not {n}")
        model = dataclasses.replace(model, name=str(name_or_path), layers=n)
        _validate(model, str(name_or_path))
        return model
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
    if m.dense_layers > m.layers:
        raise ModelError(f"{source}: dense_layers: {m.dense_layers} exceeds layers ({m.layers})")
    if m.expert_load and len(m.expert_load) != m.experts:
        raise ModelError(f"{source}: expert_load: {len(m.expert_load)} fractions for "
                         f"{m.experts} experts")
    if m.shared_experts and not m.experts:
        raise ModelError(f"{source}: shared_experts: needs routed experts (experts > 0)")
    if m.mla:
        if m.rope_dim <= 0 or m.rope_dim % 2:
            raise ModelError(f"{source}: rope_dim: MLA needs an even rotary part > 0, got "
                             f"{m.rope_dim}")
        if m.kv_heads != m.heads:
            raise ModelError(f"{source}: kv_heads: MLA expands its latent to every head "
                             f"(kv_heads = heads)")
        if m.qk_norm or m.sliding_window:
            raise ModelError(f"{source}: MLA with qk_norm or sliding_window is not modelled")
    elif m.q_lora_rank or m.rope_dim:
        raise ModelError(f"{source}: q_lora_rank / rope_dim: need kv_lora_rank > 0 (MLA)")
    if m.v_head_dim != m.head_dim and not m.mla:
        raise ModelError(f"{source}: v_head_dim: differs from head_dim only in MLA")
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
    """Map a Hugging Face config (GPT-2, LLaMA, Mistral, Mixtral, BERT, Qwen2/3, Qwen3-MoE,
    DeepSeek-V2/V3) to a ModelConfig."""
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
    except ModelError as exc:
        raise ModelError(f"{source}: {exc}") from None
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


def _window(c: dict) -> int:
    """Mistral's sliding_window (Qwen's too, but only with use_sliding_window); null is
    none, anything else must be a positive integer."""
    if c.get("sliding_window") is None or c.get("use_sliding_window", True) is False:
        return 0
    if _int(c, "sliding_window") <= 0:
        raise _BadKey("sliding_window")
    return c["sliding_window"]


def _mistral(c: dict) -> dict:
    """LLaMA's fields and the sliding window (checked with the model: below 2^63)."""
    out = _llama(c)
    if _window(c):
        out["sliding_window"] = _window(c)
    return out


def _qwen3(c: dict) -> dict:
    out = _llama(c)
    out["qk_norm"] = True
    if c.get("num_experts"):  # qwen3_moe
        out.update(experts=c["num_experts"], experts_per_token=c["num_experts_per_tok"],
                   moe_ffn=c["moe_intermediate_size"])
        if c.get("mlp_only_layers"):
            raise ModelError("mlp_only_layers: dense layers between MoE layers are not "
                             "modelled (only leading ones)")
    return out


def _deepseek(c: dict) -> dict:
    """DeepSeek-V2/V3: MLA (q_lora_rank, kv_lora_rank, qk_nope/rope/v head sizes), shared
    and routed experts, the first_k_dense_replace dense layers, MTP modules."""
    out = _llama(c)
    out.update(kv_heads=c["num_attention_heads"], head_dim=c["qk_nope_head_dim"],
               rope_dim=c["qk_rope_head_dim"], v_head_dim=c["v_head_dim"],
               kv_lora_rank=c["kv_lora_rank"], q_lora_rank=c.get("q_lora_rank") or 0,
               experts=c.get("n_routed_experts") or 0,
               experts_per_token=c.get("num_experts_per_tok") or 0,
               shared_experts=c.get("n_shared_experts") or 0,
               moe_ffn=c.get("moe_intermediate_size") or 0,
               dense_layers=c.get("first_k_dense_replace") or 0,
               mtp_layers=c.get("num_nextn_predict_layers") or 0)
    return out


_HF = {"gpt2": _gpt2, "llama": _llama, "mistral": _mistral, "mixtral": _mistral,
       "bert": _bert, "qwen2": _mistral, "qwen3": _qwen3, "qwen3_moe": _qwen3,
       "deepseek_v3": _deepseek, "deepseek_v2": _deepseek}
