"""What each row of a measured file describes, as work for the mapper and the simulator.

Every prediction maps and simulates the row's work on the target exactly as ``tessera
run`` would on any chip: a GEMM is a one-node graph lowered to per-core programs, a decoder
layer is the model's layer, a collective is one network instruction on the system. Nothing
here knows a measured value.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from experiments.run import confirmer
from hardware.chip import ChipConfig, CopyEngineConfig
from hardware.system import SystemConfig
from isa import DType, MemRef, Program, Space, build
from mapper.graph import Graph, Kind, Tensor
from mapper.layers import Phase
from mapper.lower import lower, sync
from mapper.ops import Op
from mapper.pipeline import MapOptions
from simulator.result import SimResult, sequence
from simulator.run import simulate, simulate_system
from simulator.tracesize import trace_size

if TYPE_CHECKING:  # pandas is imported where a frame is made: not at start-up
    import pandas as pd

DTYPES = {"bf16": DType.BF16, "fp16": DType.FP16, "int8": DType.INT8, "fp8": DType.FP8E4M3,
          "fp8e4m3": DType.FP8E4M3, "fp8e5m2": DType.FP8E5M2}
# what a low-precision GEMM writes: int8 products to int32 (torch._int_mm), fp8 to bf16
GEMM_OUT = {DType.INT8: DType.INT32, DType.FP8E4M3: DType.BF16, DType.FP8E5M2: DType.BF16}
# row-wise ops: graph op, attrs, inputs (elementwise ops on one input share one class)
VECTOR_OPS = {"layernorm": ("norm", {"kind": "layernorm", "eps": 1e-5, "stream": True}, 1),
              "rmsnorm": ("norm", {"kind": "rmsnorm", "eps": 1e-6, "stream": True}, 1),
              "softmax": ("act", {"fn": "softmax"}, 1),
              "gelu": ("act", {"fn": "gelu"}, 1),
              # silu_mul is SiLU(x) * x (the measured README), which PyTorch runs as two
              # kernels: the SiLU (x in, t out), then the product (t and x in, y out)
              "silu_mul": ("act", {"fn": "silu"}, 1), "add": ("add", {}, 2),
              # copy: a device-to-device copy (a driver's memcpy: mapper.lowerings._copy)
              "copy": ("copy", {}, 1), "add_scalar": ("act", {"fn": "relu"}, 1)}
COLLECTIVES = {"all_reduce": "allreduce", "all_gather": "allgather",
               "reduce_scatter": "reducescatter", "all_to_all": "alltoall"}
MEMORY_COLS = 4096  # a copy of n bytes is run as rows of this many bf16 elements
# The measured layers ran as PyTorch runs them: norms, residual adds and SwiGLU's product
# as kernels of their own (nothing folded into a GEMM) -- Tessera's mapping without fusion.
AS_MEASURED = MapOptions(fusion=False)
# Whole models ran as a plain PyTorch LLaMA (the README): RMSNorm, the rotary embedding
# computed in each layer and SwiGLU's product as the chains of kernels eager PyTorch
# launches (mapper/eager.py)
AS_EAGER = MapOptions(fusion=False, kernels="eager")
# The measured GEMMs multiplied PyTorch tensors: W row-major [K, N], as it sits in memory,
# not re-blocked (so a W whose rows are not 16-byte aligned is read as such)
GEMM_LAYOUT = "row"
PIECE_INSTRUCTIONS = 20  # the least a piece of work costs in instructions, for _guard


_LOWERED: dict[tuple[str, str], tuple] = {}  # the last row's lowering, by graph and chip


class Skip(Exception):  # noqa: N818 - a row the model cannot express, with the reason
    pass


@dataclass(frozen=True)
class Target:
    """What predictions run on: one chip, or a system of chips."""

    name: str
    chip: ChipConfig
    system: SystemConfig | None = None
    # a row whose simulation needs more dynamic instructions (after the identical-cores
    # shortcut) is skipped with the figure, not left to run for an hour
    max_instructions: int = 20_000_000

    def at_clock(self, hz: float) -> Target:
        """The same target with every chip held at ``hz`` (``power.held_clock_hz``: no cap
        searched per kernel; energy still at the voltage of ``hz``): what a measurement saw
        when the power limiter had only part of its length to act."""
        def held(c: ChipConfig) -> ChipConfig:
            return dataclasses.replace(c, power=dataclasses.replace(c.power, held_clock_hz=hz))
        system = None if self.system is None else dataclasses.replace(
            self.system, chips=tuple(held(c) for c in self.system.chips))
        return dataclasses.replace(self, chip=held(self.chip), system=system)


def _int(row: pd.Series, col: str, least: int = 1) -> int:
    try:
        v = float(row[col])
    except (TypeError, ValueError):
        raise Skip(f"column {col}: '{row[col]}' is not a number") from None
    if not (least <= v < 2**62) or v != int(v):  # NaN and infinities fail the range too
        what = "a positive" if least == 1 else f"an integer >= {least}, and"
        raise Skip(f"column {col}: '{row[col]}' is not {what} integer (below 2^62)")
    return int(v)


def _guard(target: Target, nbytes: float, pieces: float, what: str) -> None:
    """Refuse, before anything is built, a row whose tensors do not fit the chip's HBM or
    whose work (``pieces``: a coarse count of its tiles, each some tens of instructions)
    is far over the row's instruction budget."""
    cap = target.chip.hbm.capacity
    if nbytes > cap:
        raise Skip(f"{what}: {nbytes / 1e9:.4g} GB of tensors, more than the {cap / 1e9:.4g} GB "
                   f"of HBM")
    if pieces * PIECE_INSTRUCTIONS > target.max_instructions:
        raise Skip(f"{what}: about {pieces * PIECE_INSTRUCTIONS:.3g} instructions to simulate, "
                   f"over the limit of {target.max_instructions:,} (raise it with "
                   f"--max-instructions)")


def _kernels(graph: Graph, target: Target, layout: str = "auto") -> SimResult:
    """A graph's kernels on one chip, one after another (each ends in a chip-wide sync).
    The result is kept in the kernel-cost cache by the graph, the chip, the budget and the
    code of mapper and simulator, so a row met before is neither lowered nor simulated."""
    from simulator import cache

    store = cache.current()
    if store is None:
        return _lower_and_simulate(graph, target, layout)
    key = "graph:" + hashlib.blake2b(repr((
        graph, target.chip, target.max_instructions, layout,
        cache.code_digest((*cache.CODE, "mapper")))).encode(), digest_size=20).hexdigest()
    text = store.get_text(key)
    if text is not None:
        store.stats.hits += 1
        return cache.from_json(text)
    result = _lower_and_simulate(graph, target, layout)
    store.put_text(key, cache.to_json(result))
    return result


def _lower_and_simulate(graph: Graph, target: Target, layout: str = "auto") -> SimResult:
    chip = target.chip
    # tilings are ranked at the nominal clock (the power cap would only rescale them all)
    nominal = dataclasses.replace(chip, power=dataclasses.replace(chip.power, tdp_w=0.0,
                                                                  held_clock_hz=0.0))
    key = (repr(graph), repr(nominal), layout)
    if key not in _LOWERED:  # a row is simulated again when the limiter relaxes the clock
        _LOWERED.clear()
        low = lower(graph, chip, confirm=confirmer(nominal), layout=layout)
        work = sum(trace_size({(0, c): p for c, p in k.items()}) for k in low.kernel_programs)
        _LOWERED[key] = (low, work)
    low, work = _LOWERED[key]
    if work > target.max_instructions:
        raise Skip(f"{work:,} dynamic instructions to simulate, over the limit of "
                   f"{target.max_instructions:,} (raise it with --max-instructions)")
    return sequence([simulate(p, chip) for p in low.kernel_programs])


def gemm_graph(dtype: str, m: int, k: int, n: int) -> Graph:
    dt = DTYPES.get(dtype)
    if dt is None:
        raise Skip(f"dtype '{dtype}' not modelled (known: {', '.join(DTYPES)})")
    g = Graph()
    g.add(Tensor("a", (m, k), dt, Kind.INPUT))
    g.add(Tensor("w", (k, n), dt, Kind.WEIGHT))
    g.add(Tensor("c", (m, n), GEMM_OUT.get(dt, dt)))
    g.op(Op.LINEAR, "gemm", ["a", "w"], ["c"], bias=False)
    return g


def gemm(target: Target, row: pd.Series) -> SimResult:
    m, k, n = (_int(row, c) for c in ("M", "K", "N"))
    g = gemm_graph(str(row["dtype"]), m, k, n)
    _guard(target, sum(t.nbytes for t in g.tensors.values()),
           -(-m // 512) * -(-n // 512) * -(-k // 512), f"GEMM {m}x{k}x{n}")
    return _kernels(g, target, GEMM_LAYOUT)


def rows_graph(op: str, rows: int, cols: int) -> Graph:
    spec = VECTOR_OPS.get(op)
    if spec is None:
        raise Skip(f"op '{op}' not modelled (known: {', '.join(VECTOR_OPS)})")
    kind, attrs, n_in = spec
    dt = DType.BF16
    g = Graph()
    ins = [g.add(Tensor(f"x{i}", (rows, cols), dt, Kind.INPUT)) for i in range(n_in)]
    if kind == "norm":
        ins.append(g.add(Tensor("gamma", (cols * (2 if op == "layernorm" else 1),), dt,
                                Kind.WEIGHT)))
    g.add(Tensor("y", (rows, cols), dt))
    if op == "silu_mul":
        g.add(Tensor("t", (rows, cols), dt))
        g.op(kind, "silu", ins, ["t"], **attrs)
        g.op(Op.MUL, "mul", ["t", ins[0]], ["y"])
        return g
    g.op(kind, op, ins, ["y"], **attrs)
    return g


def _rows(target: Target, op: str, rows: int, cols: int) -> SimResult:
    g = rows_graph(op, rows, cols)
    _guard(target, sum(t.nbytes for t in g.tensors.values()), rows * cols / 2**16,
           f"{op} of {rows}x{cols}")
    return _kernels(g, target)


def memory(target: Target, row: pd.Series) -> SimResult:
    nbytes = _int(row, "bytes")
    rows = max(1, nbytes // DType.BF16.nbytes(MEMORY_COLS))
    return _rows(target, str(row["op"]), rows, MEMORY_COLS)


def vector(target: Target, row: pd.Series) -> SimResult:
    return _rows(target, str(row["op"]), _int(row, "T"), _int(row, "H"))


def attention_graph(b: int, hq: int, hkv: int, sq: int, skv: int, d: int,
                    causal: bool) -> Graph:
    if hq % hkv:
        raise Skip(f"Hq={hq} is not a multiple of Hkv={hkv}")
    g = Graph()
    g.add(Tensor("qkv", (b * sq, (hq + 2 * hkv) * d), DType.BF16, Kind.INPUT))
    g.add(Tensor("kc", (b, hkv, skv, d), DType.BF16, Kind.KV_CACHE))
    g.add(Tensor("vc", (b, hkv, skv, d), DType.BF16, Kind.KV_CACHE))
    g.add(Tensor("o", (b * sq, hq * d), DType.BF16))
    g.op(Op.ATTENTION, "attention", ["qkv", "kc", "vc"], ["o"], causal=causal)
    return g


def attention(target: Target, row: pd.Series) -> SimResult:
    b, hq, hkv, sq, skv, d = (_int(row, c) for c in ("B", "Hq", "Hkv", "Sq", "Skv", "D"))
    causal = str(row["causal"]).strip().lower() in ("true", "1", "yes")
    g = attention_graph(b, hq, hkv, sq, skv, d, causal)
    _guard(target, sum(t.nbytes for t in g.tensors.values()),
           b * hq * -(-sq // 64) * -(-skv // 64) / 64, f"attention B={b} Hq={hq} Skv={skv}")
    return _kernels(g, target)


def _phase(row: pd.Series):  # noqa: ANN202
    from mapper.layers import Phase

    kind = str(row["phase"])
    if kind not in ("prefill", "decode"):
        raise Skip(f"phase '{kind}' is neither prefill nor decode")
    seq = _int(row, "S") if kind == "prefill" else 1
    return Phase(kind, _int(row, "B"), seq=seq, ctx=_int(row, "ctx"))


def _model(row: pd.Series):  # noqa: ANN202
    from mapper.model import ModelError, load_model

    try:
        return load_model(str(row["model"]))
    except ModelError as exc:
        raise Skip(str(exc)) from None


def _layer_guard(target: Target, model, phase, world: int = 1) -> None:  # noqa: ANN001
    """One layer's weights, KV cache and activations must fit (per chip of the split)."""
    h, kv = model.hidden, model.kv_heads * model.head_dim
    weights = 2 * (h * (model.heads * model.head_dim + 2 * kv) + h * h + 3 * h * model.ffn)
    cache = 2 * 2 * phase.batch * (phase.ctx + phase.q_len) * kv
    acts = 2 * phase.tokens * (4 * h + 2 * model.ffn)
    _guard(target, (weights + cache) / world + acts, phase.tokens * (h + model.ffn) / 2**16,
           f"{model.name} {phase.kind} B={phase.batch}")


def layers(target: Target, row: pd.Series) -> SimResult:
    from experiments.run import run_phase

    model, phase = _model(row), _phase(row)
    _layer_guard(target, model, phase)
    return run_phase(model, target.chip, phase, AS_MEASURED).layer


def model_infer(target: Target, row: pd.Series) -> SimResult:
    """The whole model as the measured PyTorch stack ran it (its README): every layer
    (norms, adds and SwiGLU's product as kernels of their own), then the final norm and the
    LM head on each sequence's last token. A prefill row's figure is the time to first
    token; a decode row's, one step at its context."""
    from experiments.run import run_phase

    model, phase = _model(row), _phase(row)
    _layer_guard(target, model, phase)
    run = run_phase(model, target.chip, phase, AS_EAGER)
    return sequence([run.layer] * run.repeat + [run.head])


def iterations(target: Target, row: pd.Series) -> SimResult:
    """One serving iteration as the measured engine ran it (its README): the fresh prompts
    of ``prefill_lens`` (each attending causally to itself) and ``decode_batch`` sequences at
    ``decode_ctx`` share every linear layer; attention per prompt and once for the decode
    group; the final norm and LM head on every sequence's last token. Priced from each
    kernel simulated alone (``experiments.iteration``), as ``tessera serve`` prices them."""
    from experiments.iteration import Iteration, price

    model = _model(row)
    text = str(row["prefill_lens"]).strip()
    try:
        lens = [] if text in ("-", "", "nan") else [int(x) for x in text.split("+")]
        batch, ctx = _int(row, "decode_batch", 0), _int(row, "decode_ctx", 0)
    except ValueError:
        raise Skip(f"prefill_lens '{text}': expected lengths joined by '+' or '-'") from None
    if any(n < 1 for n in lens) or (batch and ctx < 1) or not (lens or batch):
        raise Skip("an iteration needs prompts of >= 1 token or decode sequences at ctx >= 1")
    for n in lens:
        _layer_guard(target, model, Phase("prefill", 1, seq=n))
    if batch:
        _layer_guard(target, model, Phase("decode", batch, ctx=ctx))
    cost = price(model, target.chip, Iteration(tuple((n, 0) for n in lens), (ctx,) * batch,
                                               per_prompt=True), AS_EAGER)
    return sequence([cost.layer] * model.layers + [cost.head])


def _first(system: SystemConfig, world: int) -> SystemConfig:
    """The first ``world`` chips of a system, joined as the system joins them."""
    if world > len(system.chips):
        raise Skip(f"{world} chips asked, the system has {len(system.chips)}")
    topo = system.topology
    return dataclasses.replace(system, chips=system.chips[:world],
                               topology=dataclasses.replace(topo, dims=(world,)))


def tp_layers(target: Target, row: pd.Series) -> SimResult:
    from experiments.run import run_system_phase
    from mapper.parallel import Parallel

    if target.system is None:
        raise Skip("tensor-parallel layers need a system preset (h200x2, h200x4)")
    world = _int(row, "world")
    system = _first(target.system, world)
    model, phase = _model(row), _phase(row)
    _layer_guard(target, model, phase, world)
    return run_system_phase(model, system, phase, Parallel(tp=world), AS_MEASURED).layer


def collectives(target: Target, row: pd.Series) -> SimResult:
    if target.system is None:
        raise Skip("collectives need a system preset (h200x2, h200x4)")
    op = COLLECTIVES.get(str(row["op"]))
    if op is None:
        raise Skip(f"collective '{row['op']}' not modelled (known: {', '.join(COLLECTIVES)})")
    world = _int(row, "world")
    system = _first(target.system, world)
    total = _int(row, "bytes")  # NCCL's buffer: the all-reduce buffer, gathered output, ...
    _guard(target, 2 * total, 0, f"{row['op']} of {total} bytes")
    # the instruction's count: the all-reduce buffer; else one chip's share (gathered
    # input, scattered output, one all-to-all block)
    elems = max(1, total // DType.BF16.nbytes(1) // (1 if op == "allreduce" else world))
    ins = build(f"net.{op}", MemRef(Space.HBM, 1 << 34), MemRef(Space.HBM, 0), elems,
                "bf16", 0)
    progs = {(c, 0): Program((ins, *sync(0), build("halt"))) for c in range(world)}
    return simulate_system(system, progs)


def power(target: Target, row: pd.Series) -> SimResult | float:
    """Mean board power of the row's work run back to back (idle: the static power)."""
    op = str(row["op"])
    if op == "idle":
        return target.chip.energy.static_w
    if op == "gemm":
        return gemm(target, row)
    if op == "copy":  # run back to back outside a CUDA graph: its calls_per_s is the
        # element-wise kernel's rate (3.0 TB/s for 2 GiB on the H100), not the large-copy
        # path memory.csv's graph-captured copies took (hardware.chip.CopyEngineConfig)
        kernel = dataclasses.replace(target.chip, copy_engine=CopyEngineConfig())
        import pandas as pd

        return memory(dataclasses.replace(target, chip=kernel),
                      pd.Series({"op": "copy", "bytes": row["bytes"]}))
    if op == "attention":
        return attention(target, row)
    raise Skip(f"power of '{op}' not modelled (gemm, copy, attention, idle)")


PREDICT = {"gemm": gemm, "gemm_lowp": gemm, "memory": memory, "vector": vector,
           "attention": attention, "layers": layers, "tp_layers": tp_layers,
           "collectives": collectives, "power": power, "model_infer": model_infer,
           "iterations": iterations}
