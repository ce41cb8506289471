"""The graph IR's ops: one enum member and one attributes type each.

Adding an op is a member of ``Op``, its attributes dataclass in ``ATTRS`` and one
``@lowers(Op.X)`` function in ``mapper.lower``; ``mapper.verify`` checks every graph against
these after each pass. ``Op`` is a ``StrEnum``, so ``node.op == "linear"`` still reads.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import StrEnum


class Op(StrEnum):
    LINEAR = "linear"  # y = x @ W (+ bias) with a fused epilogue
    NORM = "norm"  # layernorm / rmsnorm over rows
    ROPE = "rope"  # rotary embedding of the q and k columns, in place
    KV_APPEND = "kv_append"  # the step's k and v rows into the caches
    ATTENTION = "attention"  # flash attention over the caches
    SILU_MUL = "silu_mul"  # SwiGLU's silu(gate) * up
    ACT = "act"  # an activation as a kernel of its own (fusion off)
    ADD = "add"  # a residual add as a kernel of its own
    MUL = "mul"  # an element-wise product as a kernel of its own (PyTorch's silu(x) * x)
    RENAME = "rename"  # a view: the same bytes under another name
    SLICE_ROWS = "slice_rows"  # a view: rows of a tensor
    PLACE_ROWS = "place_rows"  # a view: a tensor that is rows of another
    REPLICATE_ROWS = "replicate_rows"  # each row copied (a token per routed expert)
    ALLTOALL = "alltoall"  # expert-parallel dispatch / combine
    SUM_COPIES = "sum_copies"  # the copies of each token summed (+ residual)
    ALLREDUCE = "allreduce"  # tensor-parallel all-reduce, in place
    ALLGATHER = "allgather"  # each rank's block gathered (vocabulary-parallel head, context
    # parallel keys and values, sequence-parallel norms' rows)
    REDUCESCATTER = "reducescatter"  # partial sums reduced, each rank keeping its rows
    RMS_SCALE = "rms_scale"  # 1 / rms per row (a norm folded into the next GEMM)
    ACT_SCALE = "act_scale"  # per-token quantization scale
    ACT_QUANT = "act_quant"  # per-token quantization
    # backward pass (mapper.backward)
    ATTENTION_BWD = "attention_bwd"  # flash-attention backward: dQ, dK, dV into dqkv
    SILU_MUL_BWD = "silu_mul_bwd"  # d(gate | up) of SwiGLU's silu(gate) * up
    NORM_BWD = "norm_bwd"  # dL/dx of a norm (its parameters' gradient: NORM_XDY + a GEMM)
    NORM_XDY = "norm_xdy"  # dy * normalized x, per element (summed over rows: d gamma)
    XENT = "xent"  # softmax cross-entropy's gradient w.r.t. the logits
    ACT_BWD = "act_bwd"  # dy * act'(x) of an activation
    EWISE = "ewise"  # one kernel of a composite op as eager PyTorch launches it (mapper.eager)
    COPY = "copy"  # a tensor copied whole (a device-to-device memcpy)


@dataclass(frozen=True)
class NoAttrs:
    """An op with no options."""


@dataclass(frozen=True)
class LinearAttrs:
    bias: bool = False  # inputs[2] is the bias
    act: str | None = None  # fused activation: gelu | silu | relu
    residual: str | None = None  # tensor added after the activation
    tp_residual: str | None = None  # row-parallel: added by one rank, or after the all-reduce
    scale: str | None = None  # per-output-channel weight scales (quantized weights)
    row_scale: str | None = None  # per-row scales (folded norm, per-token activations)
    sparse: bool = False  # 2:4 weights
    decode: str | None = None  # weights decoded on load: group | lut
    table: str | None = None  # lut: the 16-entry code table
    group: int = 0  # group: weights per scale along K
    w_layout: str = "blocked"  # weights in HBM: blocked | row | col (W^T, with w_trans)
    a_trans: bool = False  # inputs[0] holds X [K, M]: y = X^T @ W (a weight gradient)
    w_trans: bool = False  # y = x @ W^T, W [N, K] as stored (a data gradient)
    fold_gamma: str | None = None  # the norm weights folded into W (functional data)
    # batched per-group products (MLA's per-head absorbed projections): x [M, G*K] @ W
    # [G*K, N] -> y [M, G*N], group q's columns of x times rows q*K.. of W, one launch
    groups: int = 0
    # grouped rows (MoE experts, one launch): x's rows in consecutive groups of these sizes,
    # group q times W's rows q*K .. (q+1)*K - 1 (W [groups*K, N] stacked)
    group_rows: tuple[int, ...] = ()


@dataclass(frozen=True)
class NormAttrs:
    kind: str  # layernorm | rmsnorm
    eps: float
    # per-head norms (Qwen3's qk-norm): columns col0 .. col0+cols of each row, in place,
    # normalized in segments of this many columns (0: the whole row is one)
    segment: int = 0
    col0: int = 0
    cols: int = 0
    # as a GPU library runs it: a row wider than the registers is re-read from HBM chunk by
    # chunk on every pass (mapper.kernels.rowstream), not staged in SRAM once
    stream: bool = False


@dataclass(frozen=True)
class RopeAttrs:
    cols: int  # the q and k columns rotated
    hd: int  # head dimension
    theta: float
    pos0: int  # position of the first token
    seq: int  # tokens per sequence


@dataclass(frozen=True)
class KvAppendAttrs:
    q_dim: int
    kv_dim: int
    latent: bool = False  # MLA: inputs (latent, rotary key) fill one cache's rows


@dataclass(frozen=True)
class AttentionAttrs:
    causal: bool = True
    # multi-head latent attention: inputs are (absorbed q, rotary q, latent cache); a cache
    # row is the latent then rope_dim rotary-key columns (mapper.kernels.attention)
    rope_dim: int = 0
    scale: float = 0.0  # softmax scale (0: 1 / sqrt(head size))
    window: int = 0  # sliding window: keys each query sees (0: all)
    # MLA prefill, naive: inputs (q no-rotary, q rotary, per-head keys+values [T, heads *
    # (hd + hd)], shared rotary keys [T, rope_dim]) of ``batch`` sequences
    batch: int = 0
    heads: int = 0


@dataclass(frozen=True)
class NormBwdAttrs:
    kind: str  # layernorm | rmsnorm
    eps: float


@dataclass(frozen=True)
class XentAttrs:
    fp32: bool = False  # logits cast to fp32 first, the gradient cast back (autocast)


@dataclass(frozen=True)
class SiluMulAttrs:
    ffn: int  # columns of the gate (and of the up half)


@dataclass(frozen=True)
class ActAttrs:
    fn: str  # gelu | silu | relu | softmax
    stream: bool = False  # softmax: as NormAttrs.stream


@dataclass(frozen=True)
class EwiseAttrs:
    """One element-wise or row-reduce kernel (``mapper.eager``): ``fn`` is its vector
    instruction; the first input and the output may be a column range of a wider tensor
    (``col0``, ``width``; ``out_col0``); ``per_row`` floats per row read as a parameter
    (a rotary table); ``bcast`` how the second input is broadcast (ISA ``bcast``)."""

    fn: str
    col0: int = 0
    width: int = 0  # 0: the whole row
    out_col0: int = 0
    per_row: int = 0
    bcast: str = "none"
    scale: float = 1.0  # v.scale's factor (a mean's 1 / cols)
    b_col0: int = 0  # the second input's first column


@dataclass(frozen=True)
class RowsAttrs:
    first: int  # the first row of the slice / placement


@dataclass(frozen=True)
class CopiesAttrs:
    copies: int


@dataclass(frozen=True)
class AlltoallAttrs:
    group: int
    ep: int


@dataclass(frozen=True)
class GroupAttrs:
    group: int


@dataclass(frozen=True)
class GatherAttrs:
    group: int
    count: int = 0  # elements each rank contributes (0: its whole input)


@dataclass(frozen=True)
class EpsAttrs:
    eps: float


@dataclass(frozen=True)
class QmaxAttrs:
    qmax: float


ATTRS: dict[Op, type] = {
    Op.LINEAR: LinearAttrs, Op.NORM: NormAttrs, Op.ROPE: RopeAttrs,
    Op.KV_APPEND: KvAppendAttrs, Op.ATTENTION: AttentionAttrs, Op.SILU_MUL: SiluMulAttrs,
    Op.ACT: ActAttrs, Op.ADD: NoAttrs, Op.MUL: NoAttrs, Op.RENAME: NoAttrs,
    Op.SLICE_ROWS: RowsAttrs,
    Op.PLACE_ROWS: RowsAttrs, Op.REPLICATE_ROWS: CopiesAttrs, Op.ALLTOALL: AlltoallAttrs,
    Op.SUM_COPIES: CopiesAttrs, Op.ALLREDUCE: GroupAttrs, Op.ALLGATHER: GatherAttrs,
    Op.REDUCESCATTER: GroupAttrs,
    Op.RMS_SCALE: EpsAttrs,
    Op.ACT_SCALE: QmaxAttrs, Op.ACT_QUANT: NoAttrs,
    Op.ATTENTION_BWD: AttentionAttrs, Op.SILU_MUL_BWD: SiluMulAttrs, Op.NORM_BWD: NormBwdAttrs,
    Op.NORM_XDY: NormBwdAttrs, Op.XENT: XentAttrs, Op.ACT_BWD: ActAttrs,
    Op.EWISE: EwiseAttrs, Op.COPY: NoAttrs,
}
VIEWS = frozenset({Op.RENAME, Op.SLICE_ROWS, Op.PLACE_ROWS})  # no data moves
# attributes of a LINEAR that name tensors (checked to exist by the verifier)
TENSOR_ATTRS = ("residual", "tp_residual", "scale", "row_scale", "table", "fold_gamma")


def make_attrs(op: Op, name: str, **kw: object) -> object:
    """The attributes value of ``op`` from keywords; an unknown or missing one is an error
    naming the node and what the op takes."""
    cls = ATTRS[op]
    try:
        return cls(**kw)
    except TypeError:
        known = ", ".join(f.name for f in fields(cls)) or "none"
        raise ValueError(f"{name}: op {op.value} takes attributes {known}, got "
                         f"{', '.join(kw) or 'none'}") from None
