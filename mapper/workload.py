"""How much simulation a graph asks for, estimated from its shapes before it is lowered.

Lowering and simulating are both proportional to the tiles a kernel is cut into, and a
tile is a handful of instructions (loads, one matrix or vector op, a store, semaphores).
The estimate counts tiles of a fixed, generous size per op class, so it is a quick lower
bound of the dynamic instructions simulated (after the identical-cores shortcut, which
runs one core per class of identical programs): a run it refuses is at least that large.
llama2-7b prefill of 2,048 tokens on an h100: 0.7 M estimated, 1.3 M engine instructions.
"""

from __future__ import annotations

from isa.errors import TesseraError
from mapper.graph import Graph, Node
from mapper.ops import VIEWS, Op

GEMM_EDGE = 128  # elements per side of an estimated GEMM tile (M, N and K)
GEMM_TILE_INSTRUCTIONS = 3  # A load, W load, matmul (stores amortised over K)
ATTN_EDGE = 64  # query and key rows of an estimated attention tile
ATTN_TILE_INSTRUCTIONS = 6  # K load, V load, two matmuls, softmax update, semaphores
ROW_TILE_ELEMS = 1 << 16  # elements of an estimated row-wise tile
ROW_TILE_INSTRUCTIONS = 6
SIM_RATE = 300_000  # instructions simulated per second of wall time on one core, about
# (benchmarks/bench_sim.py prints this machine's figure)


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def node_instructions(g: Graph, node: Node) -> int:
    """The estimated dynamic instructions of one node's kernel (0 for views)."""
    t = g.tensors
    if node.op == Op.LINEAR:
        (m, k), n = t[node.inputs[0]].shape, t[node.inputs[1]].shape[-1]
        tiles = _ceil(m, GEMM_EDGE) * _ceil(n, GEMM_EDGE) * _ceil(k, GEMM_EDGE)
        return GEMM_TILE_INSTRUCTIONS * tiles
    if node.op == Op.ATTENTION:
        qkv, kc = t[node.inputs[0]], t[node.inputs[-1 if node.attrs.rope_dim else 1]]
        if len(node.inputs) == 4:  # naive MLA prefill: heads of head_dim over the prompt
            batch, heads = node.attrs.batch, node.attrs.heads
            kv_len = q_len = qkv.shape[0] // batch
        else:
            batch, _, kv_len, hd = kc.shape
            hd -= node.attrs.rope_dim  # MLA: the latent's width
            heads = t[node.outputs[0]].shape[1] // hd
            q_len = qkv.shape[0] // batch
        pairs = _ceil(q_len, ATTN_EDGE) * _ceil(kv_len, ATTN_EDGE)
        if node.attrs.causal and q_len > 1:
            pairs = (pairs + _ceil(q_len, ATTN_EDGE)) // 2
        return ATTN_TILE_INSTRUCTIONS * batch * heads * pairs
    if node.op in VIEWS:
        return 0
    out = t[node.outputs[0]] if node.outputs else t[node.inputs[0]]
    return ROW_TILE_INSTRUCTIONS * _ceil(out.elements, ROW_TILE_ELEMS)


def estimate_instructions(g: Graph) -> int:
    """The estimated dynamic instructions of every kernel of ``g``."""
    return sum(node_instructions(g, n) for n in g.nodes)


def seconds(instructions: float) -> float:
    """Rough wall time to simulate ``instructions`` at ``SIM_RATE``."""
    return instructions / SIM_RATE


class WorkLimitError(TesseraError):
    """A run larger than its instruction budget, refused before it is mapped."""


def check_work(instructions: int, limit: int, what: str, lift: str) -> None:
    """Refuse ``what`` when its estimated instructions exceed ``limit``, saying how long it
    would take and how to lift the limit (``lift``: which options shrink the work)."""
    if instructions <= limit:
        return
    raise WorkLimitError(
        f"{what}: at least {instructions:.3g} instructions to simulate (about "
        f"{_duration(seconds(instructions))} here), over --max-instructions {limit:,}: "
        f"{lift}, or raise --max-instructions")


def _duration(s: float) -> str:
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"
