"""Training rows of the measured files as work (the README's "Whole models, serving
iterations, training and energy"): each maps the row as that README says PyTorch ran it.

A row of these kinds measures several things (forward and forward + backward time, and
activation bytes; step time and peak bytes): each prediction returns one figure per
measured column (``MULTI``), and the validator reports each column's error apart.
"""

from __future__ import annotations

import pandas as pd

from experiments.measured_work import Skip, Target, _guard, _int, _model
from isa import DType
from mapper.kernels.multi_tensor import STEP

MULTI = {
    "train_layers": ("fwd_ms_per_layer", "fwd_bwd_ms_per_layer", "act_bytes_per_layer"),
    "train_step": ("step_ms", "peak_bytes"),
}


def _train_guard(target: Target, model, tokens: int, seq: int, what: str,  # noqa: ANN001
                 head: bool = False) -> None:
    """Refuse, before anything is built, a row whose largest kernel would need more
    simulated instructions than the row's budget."""
    from experiments.train.step import largest_kernel_instructions

    need = largest_kernel_instructions(model, tokens, seq, 1, head)
    if need > target.max_instructions:
        raise Skip(f"{what}: about {need:.3g} instructions in its largest kernel, over the "
                   f"limit of {target.max_instructions:,} (raise it with --max-instructions)")


def _flag(row: pd.Series, col: str) -> bool:
    v = str(row[col]).strip()
    if v not in ("0", "1"):
        raise Skip(f"column {col}: '{row[col]}' is neither 0 nor 1")
    return v == "1"


def train_layers(target: Target, row: pd.Series) -> dict[str, float]:
    """A stack of ``n_layers`` layers with bf16 weights, forward and forward + backward
    (weight gradients written in bf16, one backward), with or without each layer
    recomputed in its backward (activation checkpointing)."""
    from experiments.train.costs import layer_costs
    from experiments.train.memory import autograd_extra_bytes, saved_bytes
    from mapper.backward import GradMode, training_graph
    from mapper.layers import Phase

    model = _model(row)
    phase = Phase("prefill", _int(row, "B"), seq=_int(row, "S"))
    recompute = _flag(row, "recompute")
    n = _int(row, "n_layers")
    _guard(target, 40 * phase.tokens * (model.hidden + model.ffn), 0,
           f"{model.name} training layer")
    _train_guard(target, model, phase.tokens, phase.seq, f"{model.name} training layer")
    lc = layer_costs(model, target.chip, phase, grads=GradMode(DType.BF16, False),
                     kernels="eager")  # a plain PyTorch model (README)
    fwd, bwd = lc.fwd.time_s, lc.bwd.time_s + (lc.fwd.time_s if recompute else 0.0)
    g = training_graph(model, phase, 1)
    saved = saved_bytes(g) + autograd_extra_bytes(model, phase.tokens)
    x = g.tensors["x0"].nbytes
    # recomputed: every layer keeps its input; one layer's activations live while it reruns
    acts = (n * x + saved) / n if recompute else saved
    return {"fwd_ms_per_layer": fwd * 1e3, "fwd_bwd_ms_per_layer": (fwd + bwd) * 1e3,
            "act_bytes_per_layer": float(acts)}


def optimizer(target: Target, row: pd.Series) -> dict[str, float]:
    """One ``torch.optim.AdamW`` step, fused or foreach, over fp32 tensors of 16 Mi elements
    (README), as PyTorch's multi-tensor kernels run it (``mapper.kernels.multi_tensor``)."""
    from experiments.train.costs import pytorch_optimizer_cost

    impl = str(row["impl"])
    if impl not in ("fused", "foreach"):
        raise Skip(f"optimizer implementation '{impl}' not modelled (fused, foreach)")
    n = _int(row, "n_params")
    # p, g, m, v in fp32 (foreach allocates a fifth list); one piece per block step per kernel
    _guard(target, (16 if impl == "fused" else 20) * n,
           n / STEP * (1 if impl == "fused" else 8), f"AdamW over {n} parameters")
    sizes = [TENSOR] * (n // TENSOR) + ([n % TENSOR] if n % TENSOR else [])
    return {"ms": pytorch_optimizer_cost(target.chip, sizes, impl).time_s * 1e3}


TENSOR = 16 * 2 ** 20  # elements per parameter tensor of the measured optimizer steps


def train_step(target: Target, row: pd.Series) -> dict[str, float]:
    """A whole step as the README's PyTorch run: fp32 master weights, bf16 autocast, fp32
    cross-entropy over the vocabulary, ``grad_accum`` micro-batches, one fused AdamW."""
    from experiments.train.step import TrainError, TrainSpec
    from experiments.train.step import train_step as price

    model = _model(row)
    n = _int(row, "n_params")
    if abs(model.params - n) > 0.01 * n:
        raise Skip(f"{model.name} has {model.params:,} parameters, the row {n:,}")
    micro, accum = _int(row, "micro_B"), _int(row, "grad_accum")
    _train_guard(target, model, micro * _int(row, "S"), _int(row, "S"),
                 f"{model.name} training step", head=True)
    spec = TrainSpec(micro, _int(row, "S"), micro * accum,
                     recompute="full" if _flag(row, "recompute") else "none", recipe="pytorch")
    try:
        r = price(model, spec, target.chip)
    except TrainError as exc:
        raise Skip(str(exc)) from None
    return {"step_ms": r.step_s * 1e3, "peak_bytes": float(r.memory.total)}


PREDICT = {"train_layers": train_layers, "optimizer": optimizer, "train_step": train_step}


def energy(target: Target, row: pd.Series) -> dict[str, float]:
    """Joules per token of the whole board: a workload named model_phase_bN_(ctxC|sS) run
    back to back, priced as the measured PyTorch stack ran it (``model_infer``): one
    decode step's (or prefill's) simulated energy, static power included, over its tokens;
    or model_train_bN_sS, one training step of N sequences of S tokens as ``train_step``
    runs it (one micro-batch, PyTorch's recipe), over its N x S tokens."""
    import re

    from experiments.measured_work import AS_EAGER
    from experiments.run import run_phase
    from mapper.layers import Phase
    from mapper.model import ModelError, load_model

    name = str(row["workload"])
    m = re.fullmatch(r"(.+)_(decode|prefill|train)_b(\d+)_(ctx|s)(\d+)", name)
    if m is None:
        raise Skip(f"workload '{name}' is not model_decode_bN_ctxC, model_prefill_bN_sS or "
                   f"model_train_bN_sS")
    try:
        model = load_model(m.group(1))
    except ModelError as exc:
        raise Skip(str(exc)) from None
    b, n = int(m.group(3)), int(m.group(5))
    if m.group(2) == "train":
        return {"joules_per_unit": _train_energy(target, model, b, n) / (b * n)}
    phase = Phase("decode", b, ctx=n) if m.group(2) == "decode" else Phase("prefill", b, seq=n)
    from experiments.measured_work import _layer_guard

    _layer_guard(target, model, phase)
    _train_guard(target, model, phase.tokens, phase.kv_len, f"{model.name} {phase.kind}",
                 head=False)
    run = run_phase(model, target.chip, phase, AS_EAGER)
    return {"joules_per_unit": run.energy_j / phase.tokens}


def _train_energy(target: Target, model, batch: int, seq: int) -> float:  # noqa: ANN001
    """One training step's energy on the board (static power included)."""
    from experiments.train.step import TrainError, TrainSpec
    from experiments.train.step import train_step as price

    _train_guard(target, model, batch * seq, seq, f"{model.name} training step", head=True)
    try:
        return price(model, TrainSpec(batch, seq, batch, recipe="pytorch"), target.chip).energy_j
    except TrainError as exc:
        raise Skip(str(exc)) from None


PREDICT["energy"] = energy
MULTI["energy"] = ("joules_per_unit",)
