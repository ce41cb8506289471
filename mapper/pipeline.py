"""The mapper's front door: model + chip + phase + options -> per-core programs.

Layers are identical and separated by a chip-wide sync, so a whole model's time is exactly
``layers x`` one layer's; ``map_model`` maps ``layers_mapped`` layers (1 by default in
performance mode) and reports the factor, and ``layers_mapped=None`` maps them all.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from hardware.chip import ChipConfig
from mapper.graph import Graph
from mapper.layers import Phase, build_layers
from mapper.lower import Confirm, Lowered, lower
from mapper.passes import apply_passes
from mapper.weights import add_rope_tables, init_weights


def _opt(default: object, help: str, choices: tuple | None = None,  # noqa: A002
         **kw: object) -> object:
    """A mapping option: its default, help and choices, the one source of the CLI's flags
    (``tessera run``) and of a sweep file's checks."""
    factory = {"default_factory": lambda: default} if isinstance(default, list) else \
        {"default": default}
    return field(**factory, metadata={"help": help, "choices": choices, **kw})


@dataclass(frozen=True)
class MapOptions:
    quant: str | None = _opt(None, "weight quantization: linear int8/int4/fp8 (per output "
                             "channel, or per group with --quant-group), logarithmic log4, "
                             "clustered cluster16",
                             ("int8", "int4", "fp8", "fp4", "log4", "cluster16"))
    quant_group: int = _opt(0, "linear quantization with one scale per G weights along K "
                               "(0: per output channel)")
    act_quant: str | None = _opt(None, "quantize the activations of quantized projections "
                                       "too (W8A8, per-token scales); needs --quant of the "
                                       "same type", ("int8", "fp8", "fp4"))
    quant_layers: tuple[int, ...] | None = _opt(None, "quantize only these layers (mixed "
                                                      "precision; default: all)")
    sparsity: str | None = _opt(None, "prune weights to 2:4 sparsity", ("2:4",))
    low_rank: int = _opt(0, "factorize the MLP projections to rank R by truncated SVD "
                            "(0: off)")
    low_rank_targets: tuple[str, ...] = _opt(("up", "gate_up", "down"),
                                             "the projections --low-rank factorizes")
    fusion: bool = _opt(True, "fuse epilogues (activation, residual) into the GEMMs; off: "
                              "run them as separate kernels")
    functional: bool = _opt(False, "compute real values (small models only; maps every "
                                   "layer)")
    seed: int = _opt(0, "seed of functional-mode weights")
    layers_mapped: int | None = _opt(1, "layers mapped and simulated (None: every layer)")
    confirm_top: int = _opt(3, "GEMM tilings confirmed by simulation (0 or 1: estimate only)")
    layout: str = _opt("auto", "weights in HBM", ("auto", "blocked", "row"))
    kernels: str = _opt("fused", "composite ops (RMSNorm, RoPE, SwiGLU's product): one fused "
                                 "kernel each, or the chain eager PyTorch launches (timing "
                                 "only; mapper/eager.py)", ("fused", "eager"))


def option(name: str) -> dataclasses.Field:
    """The field of mapping option ``name`` (its default and metadata)."""
    return {f.name: f for f in dataclasses.fields(MapOptions)}[name]


@dataclass
class Mapped:
    graph: Graph
    lowered: Lowered
    phase: Phase
    layer_factor: float  # multiply one mapped run by this for the whole stack
    weights: dict[str, np.ndarray] | None = None
    inputs: dict[str, np.ndarray] = field(default_factory=dict)
    notes: dict[str, object] = field(default_factory=dict)


def map_model(model, chip: ChipConfig, phase: Phase, opts: MapOptions = MapOptions(),  # noqa: ANN001
              inputs: dict[str, np.ndarray] | None = None,
              confirm: Confirm | None = None) -> Mapped:
    """``confirm`` (programs -> seconds) ranks the best GEMM tilings by simulating them."""
    if getattr(model, "experts", 0) and opts.functional:
        raise ValueError(f"{model.name}: mixture-of-experts layers run in performance mode "
                         f"only (uniform routing; functional routing is not modelled)")
    if opts.functional and getattr(model, "sliding_window", 0) and \
            phase.kv_len > model.sliding_window:
        raise ValueError(f"{model.name}: functional mode past its sliding window "
                         f"({model.sliding_window} keys) is not modelled (a prompt's kernel "
                         f"does not mask the keys before the window, nor numpy's reference); "
                         f"timing is")
    n = model.layers if opts.layers_mapped is None else min(opts.layers_mapped, model.layers)
    graph = build_layers(model, phase, n)
    weights = None
    if opts.functional:
        weights = init_weights(graph, opts.seed)
        add_rope_tables(graph, weights, phase.batch)
    graph, weights, notes = apply_passes(graph, weights, opts)
    ins = dict(inputs or {})
    if opts.functional and "x0" not in ins:
        rng = np.random.default_rng(opts.seed + 1)
        ins["x0"] = rng.standard_normal(graph.tensors["x0"].shape)
    lowered = lower(graph, chip, weights, ins if opts.functional else None,
                    confirm if opts.confirm_top > 1 else None, opts.confirm_top, opts.layout)
    return Mapped(graph, lowered, phase, model.layers / n, weights, ins, notes)
