"""Before a run is mapped: does it fit, and how much work is it?

Three checks, each a one-line error that says what to change: the context against the
model's positions (``mapper.footprint.check_context``), each phase's memory per chip
against HBM (``mapper.footprint.check_fit``), and the instructions the run will simulate,
estimated from the graph's shapes, against the budget (``mapper.workload``). All of them
take well under a second, whatever the sizes asked for.
"""

from __future__ import annotations

from dataclasses import replace

from hardware.chip import ChipConfig
from mapper.footprint import check_context
from mapper.layers import Phase, build_head
from mapper.ops import Op
from mapper.pipeline import MapOptions
from mapper.workload import check_work, estimate_instructions, node_instructions


def admit(model, chip: ChipConfig, mode: str, batch: int, seq: int, ctx: int,  # noqa: ANN001
          tokens: int, opts: MapOptions, system, par, samples: int,  # noqa: ANN001
          max_instructions: int, check_memory: bool = True,
          allow_long_context: bool = False) -> tuple[int, str | None]:
    """(estimated instructions, a warning or None), or the error that refuses the run."""
    warning = check_context(model, mode, seq, ctx, tokens, allow_long_context)
    if check_memory:
        for phase in _phases(mode, batch, seq, ctx, tokens):
            fits(model, chip, per_chip(phase, par), opts, system, par)
    work = _work(model, mode, batch, seq, ctx, tokens, opts, par, samples)
    check_work(work, max_instructions,
               f"{model.name} {mode} (batch {batch}, seq {seq}, ctx {ctx})",
               "lower --seq, --ctx or --batch" + (", --tokens or --decode-samples"
                                                  if mode == "generate" else ""))
    return work, warning


def memory(model, chip: ChipConfig, mode: str, batch: int, seq: int, ctx: int,  # noqa: ANN001
           tokens: int, opts: MapOptions, system=None, par=None) -> dict:  # noqa: ANN001
    """The busiest chip's bytes at the run's largest phase, by part, and its HBM."""
    from mapper.footprint import footprint

    tp, pp, dp, ep = (par.tp, par.pp, par.dp, par.ep) if par is not None else (1, 1, 1, 1)
    fps = [footprint(model, per_chip(ph, par), opts, tp, pp, dp, ep)
           for ph in _phases(mode, batch, seq, ctx, tokens)]
    fp = max(fps, key=lambda f: f.total)
    cap = min(c.hbm.capacity for c in system.chips) if system is not None else chip.hbm.capacity
    return {"weights_bytes": fp.weights, "kv_cache_bytes": fp.kv_cache,
            "activations_bytes": fp.activations, "workspace_bytes": fp.workspace,
            "total_bytes": fp.total, "hbm_bytes": cap}


def decode_points(ctx0: int, tokens: int, samples: int) -> list[int]:
    """Context lengths to simulate: all of them, or ``samples`` evenly spaced incl. both ends."""
    if samples <= 0 or samples >= tokens:
        return [ctx0 + i for i in range(tokens)]
    step = (tokens - 1) / (samples - 1)
    return sorted({ctx0 + round(i * step) for i in range(samples)})


def _work(model, mode: str, batch: int, seq: int, ctx: int, tokens: int,  # noqa: ANN001
          opts: MapOptions, par, samples: int) -> int:  # noqa: ANN001
    """Estimated instructions of every simulation of the run (``mapper.workload``): the
    mapped layers of one chip (its shard) and the head, per phase simulated."""
    from mapper.layers import Shard, build_layers

    tp, dp = (par.tp, par.dp) if par is not None else (1, 1)
    n = model.layers if opts.layers_mapped is None else min(opts.layers_mapped, model.layers)
    from experiments.decode_steps import supported

    total = 0
    phases = [per_chip(ph, par) for ph in _phases(mode, batch, seq, ctx, tokens)]
    if mode == "generate":  # every decode context simulated, not only the last
        phases[1:] = [Phase("decode", batch, ctx=c) for c in decode_points(seq, tokens, samples)]
    derived = mode == "generate" and supported(model, opts, par)
    for i, phase in enumerate(phases):
        replica = replace(phase, batch=max(1, phase.batch // dp))
        g = build_layers(model, replica, n, shard=Shard(tp, 0, 1))
        if derived and i >= 2:  # a later step simulates only its attention again
            total += sum(node_instructions(g, x) for x in g.nodes if x.op == Op.ATTENTION)
            continue
        total += estimate_instructions(g) + estimate_instructions(build_head(model, replica))
    return total


def per_chip(phase: Phase, par) -> Phase:  # noqa: ANN001
    """What the busiest chip runs of ``phase``: with context parallelism, a prefill's last
    chunk after the others (its cache the whole prompt)."""
    cp = getattr(par, "cp", 1) if par is not None else 1
    if cp == 1 or phase.kind != "prefill" or phase.seq % cp:
        return phase
    chunk = phase.seq // cp
    return Phase("chunk", phase.batch, seq=chunk, ctx=phase.seq - chunk)


def _phases(mode: str, batch: int, seq: int, ctx: int, tokens: int) -> list[Phase]:
    """The phases a mode runs, at their largest (generate: the last decode context)."""
    out = []
    if mode in ("prefill", "generate"):
        out.append(Phase("prefill", batch, seq=seq))
    if mode == "decode":
        out.append(Phase("decode", batch, ctx=ctx))
    if mode == "generate":
        out.append(Phase("decode", batch, ctx=seq + tokens - 1))
    return out


def fits(model, chip: ChipConfig, phase: Phase, opts: MapOptions, system=None,  # noqa: ANN001
         par=None):  # noqa: ANN001, ANN201
    """The phase's memory per chip (``mapper.footprint``), or a MemoryFitError."""
    from mapper.footprint import check_fit

    if system is None:
        return check_fit(model, phase, opts, chip.hbm.capacity, f"one {chip.name}")
    cap = min(c.hbm.capacity for c in system.chips)
    return check_fit(model, phase, opts, cap, f"each chip of {system.name}", par.tp, par.pp,
                     par.dp, par.ep)
