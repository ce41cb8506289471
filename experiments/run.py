"""Run a model on a chip: map, simulate, and scale to the whole stack — the numbers of
``tessera run``. Every figure is a simulated time or energy times a count stated here."""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from experiments import decode_steps
from experiments.admit import admit, decode_points, memory
from hardware.chip import ChipConfig
from mapper.layers import Phase, build_head
from mapper.lower import lower
from mapper.ops import VIEWS, Op
from mapper.pipeline import MapOptions, map_model
from mapper.workload import seconds
from simulator.engine.machine import RunLimits
from simulator.functional.memory import DEFAULT_LIMIT
from simulator.result import SimResult, sequence
from simulator.run import simulate
from simulator.tracesize import MAX_TRACE_EVENTS, check_trace, trace_size

PROGRESS_AFTER_S = 3.0  # runs estimated to simulate longer show progress
# a run's instruction budget: minutes of simulation; estimated up front (mapper.workload)
RUN_MAX_INSTRUCTIONS = 50_000_000


@dataclass(frozen=True)
class Budget:
    """The limits of the simulations behind a run (``tessera run --max-time ...``)."""

    limits: RunLimits = RunLimits(max_instructions=RUN_MAX_INSTRUCTIONS)
    memory_limit: int = DEFAULT_LIMIT  # bytes functional mode may allocate
    max_trace_events: int = MAX_TRACE_EVENTS
    progress: bool = False  # a bar over the kernels simulated (on a terminal)


DEFAULT_BUDGET = Budget()


@dataclass(frozen=True)
class PhaseRun:
    """One forward pass of the whole model: ``repeat`` x the simulated layers + the head."""

    phase: Phase
    layer: SimResult  # the mapped layers (one, unless every layer was mapped)
    head: SimResult  # final norm + logits
    repeat: int  # model layers / mapped layers
    map_wall_s: float
    sim_wall_s: float
    other: SimResult | None = None  # mixed precision: the layers left unquantized
    other_repeat: int = 0
    mapped: object = field(default=None, repr=False, compare=False)  # for reading outputs
    kernels: list = field(default_factory=list, repr=False, compare=False)  # the layer's

    def _total(self, attr: str) -> float:
        other = getattr(self.other, attr) * self.other_repeat if self.other else 0.0
        return self.repeat * getattr(self.layer, attr) + other + getattr(self.head, attr)

    @property
    def latency_s(self) -> float:
        return self._total("time_s")

    @property
    def energy_j(self) -> float:
        return self._total("energy_total_j")

    @property
    def flops(self) -> float:
        return self._total("flops")

    def totals(self) -> dict[str, float]:
        """Bytes per memory level and energy per component of the whole pass (layers x
        their count + the head), the same scope as ``latency_s`` and ``energy_j``."""
        parts = [(self.layer, self.repeat), (self.head, 1)]
        if self.other is not None:
            parts.append((self.other, self.other_repeat))
        out: dict[str, float] = {}
        for res, times in parts:
            for key, v in res.bytes.items():
                out[f"{key}_bytes"] = out.get(f"{key}_bytes", 0.0) + v * times
            for key, v in res.energy_j.items():
                out[f"energy_{key}_j"] = out.get(f"energy_{key}_j", 0.0) + v * times
        return out


@dataclass
class RunReport:
    model: str
    chip: str
    mode: str  # prefill | decode | generate
    prefill: PhaseRun | None = None
    decode: list[PhaseRun] = field(default_factory=list)
    decode_tokens: int = 0
    decode_interpolated: bool = False
    notes: dict = field(default_factory=dict)

    def headline(self) -> dict[str, float]:
        out: dict[str, float] = {}
        if self.mode == "prefill":
            out["latency_s"] = self.prefill.latency_s
            out["energy_j"] = self.prefill.energy_j
        elif self.mode == "decode":
            out["latency_s"] = self.decode[0].latency_s
            out["energy_j"] = self.decode[0].energy_j
        else:
            tpot = self.tpot_s
            total = self.prefill.latency_s + tpot * self.decode_tokens
            energy = self.prefill.energy_j + self.decode_energy_j
            batch = self.prefill.phase.batch
            out.update(latency_s=total, energy_j=energy, ttft_s=self.prefill.latency_s,
                       tpot_s=tpot, tokens_per_s=batch * self.decode_tokens / total,
                       energy_per_token_j=energy / (batch * self.decode_tokens))
        return out

    def totals(self) -> dict[str, float]:
        """``PhaseRun.totals`` over what the headline covers: the prefill, one decode step,
        or (generate) the prefill plus every decode step (interpolated like the latency)."""
        if self.mode == "prefill":
            return self.prefill.totals()
        if self.mode == "decode":
            return self.decode[0].totals()
        keys = self.prefill.totals().keys()
        steps = {k: self._decode_sum_of(lambda r, k=k: r.totals()[k]) for k in keys}
        return {k: self.prefill.totals()[k] + steps[k] for k in keys}

    @property
    def scope(self) -> str:
        """What the headline and ``totals`` cover, in words (a column of every result)."""
        if self.mode == "prefill":
            return "prefill (all prompts)"
        if self.mode == "decode":
            return "one decode step (all sequences)"
        return f"prefill + {self.decode_tokens} decode steps"

    @property
    def tpot_s(self) -> float:
        return self._decode_sum("latency_s") / self.decode_tokens

    @property
    def decode_energy_j(self) -> float:
        return self._decode_sum("energy_j")

    def _decode_sum(self, attr: str) -> float:
        return self._decode_sum_of(lambda r: getattr(r, attr))

    def _decode_sum_of(self, value) -> float:  # noqa: ANN001
        """Sum over the generated tokens, linear between the sampled context lengths."""
        pts = sorted((r.phase.ctx, value(r)) for r in self.decode)
        first = pts[0][0]
        total = 0.0
        for step in range(self.decode_tokens):
            total += _interp(pts, first + step)
        return total


def _interp(pts: list[tuple[int, float]], x: int) -> float:
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        if x0 <= x <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return pts[-1][1]


def run_phase(model, chip: ChipConfig, phase: Phase, opts: MapOptions,  # noqa: ANN001
              trace: bool = False, emit_asm: Path | None = None,
              budget: Budget = DEFAULT_BUDGET) -> PhaseRun:
    """One phase of the whole model. With mixed precision in performance mode, one quantized
    and one unquantized layer are simulated and each counted for its layers."""
    quantized = _quantized_layers(model, opts)
    mixed = not opts.functional and 0 < quantized < model.layers
    t0 = time.perf_counter()
    mapped = map_model(model, chip, phase, replace(opts, quant_layers=None) if mixed else opts,
                       confirm=confirmer(chip))
    if emit_asm is not None:
        write_asm(mapped.lowered.programs, emit_asm, phase.kind)
    head = lower(build_head(model, phase), chip)
    plain = map_model(model, chip, phase, replace(opts, quant=None, quant_layers=None),
                      confirm=confirmer(chip)) if mixed else None
    t1 = time.perf_counter()
    layer = _simulate(mapped, chip, opts.functional, trace, budget)
    parts = mapped.notes.pop("kernel_results", [])
    other = _simulate(plain, chip, False, False) if plain else None
    head_r = simulate(head.programs, chip)
    t2 = time.perf_counter()
    repeat = quantized if mixed else int(round(mapped.layer_factor))
    return PhaseRun(phase, layer, head_r, repeat, t1 - t0, t2 - t1, other,
                    model.layers - quantized if mixed else 0, mapped, parts)


def composed_phase(model, chip: ChipConfig, phase: Phase, opts: MapOptions) -> PhaseRun:  # noqa: ANN001
    """One phase priced from its kernels' costs (``experiments.iteration.node_cost``): the
    layer graph is built as ``map_model`` builds it, and each node's kernel is lowered and
    simulated alone once per process (and kept in the kernel-cost cache), so a sweep's
    points that share kernels (the same GEMMs at another context) lower nothing twice.
    Kernels end in chip-wide syncs, so the sum is the mapped phase's cost;
    ``tests/experiments/test_composed_phase.py`` compares the two. No programs are kept
    (no ``mapped``): for figures, not for reading outputs or writing assembly."""
    from experiments.iteration import _chip_key, node_cost

    t0 = time.perf_counter()
    n = model.layers if opts.layers_mapped is None else min(opts.layers_mapped, model.layers)
    graph = decode_steps.layer_graph(model, phase, opts, None)  # as map_model builds it
    lowering = (opts.confirm_top, opts.layout)
    layer = sequence([node_cost(graph, node, chip, True, lowering) for node in graph.nodes
                      if node.op not in VIEWS])
    key = (model, _chip_key(chip), phase.batch)  # the head: final norm and logits per
    if key not in _HEADS:  # sequence, simulated whole as run_phase does
        _HEADS[key] = simulate(lower(build_head(model, phase), chip).programs, chip)
    return PhaseRun(phase, layer, _HEADS[key], int(round(model.layers / n)), 0.0,
                    time.perf_counter() - t0)


_HEADS: dict[tuple, SimResult] = {}  # (model, chip, sequences) -> the head, this process


def composable(model, opts: MapOptions, trace: bool, emit_asm: Path | None,  # noqa: ANN001
               system) -> bool:  # noqa: ANN001
    """Whether a run's phases may be priced from kernel costs (``composed_phase``): one chip,
    performance mode, every layer alike (``decode_steps.supported``), no trace or assembly
    asked for."""
    return system is None and not trace and emit_asm is None and \
        decode_steps.supported(model, opts, None)


def confirmer(chip: ChipConfig):  # noqa: ANN201
    """The mapper's tiling confirmation: simulate the candidates (through the kernel-cost
    cache) and remember each decision, keyed by the chip and the code that decides it.
    Candidates are ranked at the nominal clock: the power cap would lower it for all alike,
    and finding the capped clock takes a simulation per step of its fixed point."""
    from simulator import cache

    nominal = dataclasses.replace(chip, power=dataclasses.replace(chip.power, tdp_w=0.0,
                                                                  held_clock_hz=0.0))

    def confirm(programs: dict) -> float:
        return simulate(programs, nominal).time_s

    confirm.counters = cache.counts  # type: ignore[attr-defined]  (a worker's, sent back)
    confirm.add_counters = cache.add_counts  # type: ignore[attr-defined]
    store = cache.current()
    if store is not None:
        confirm.memo = cache.Memo(store, repr(nominal) + cache.code_digest(
            (*cache.CODE, "mapper")))  # type: ignore[attr-defined]
    return confirm


def _quantized_layers(model, opts: MapOptions) -> int:  # noqa: ANN001
    if not opts.quant or opts.quant_layers is None:
        return model.layers if opts.quant else 0
    return len({i for i in opts.quant_layers if 0 <= i < model.layers})


def _simulate(mapped, chip: ChipConfig, functional: bool, trace: bool,  # noqa: ANN001
              budget: Budget = DEFAULT_BUDGET) -> SimResult:
    low, limits = mapped.lowered, budget.limits
    if functional:
        if trace:
            check_trace(trace_size(_keyed(low.programs), False), budget.max_trace_events)
        return simulate(low.programs, chip, functional=True, trace=trace, limits=limits,
                        memory_limit=budget.memory_limit)
    if trace:
        check_trace(sum(trace_size(_keyed(p)) for p in low.kernel_programs),
                    budget.max_trace_events)
    # kernel by kernel: each ends in a chip-wide sync, so their times add exactly
    parts = [simulate(p, chip, trace=trace, limits=limits)
             for p in _bar(low.kernel_programs, budget.progress, "kernels")] if trace else \
        _each(lambda p: simulate(p, chip, limits=limits), low.kernel_programs, budget.progress,
              "kernels")
    mapped.notes["kernels"] = [
        {"name": name, "kind": kind, "time_s": r.time_s, "flops": r.flops,
         "hbm_bytes": r.bytes["hbm_read"] + r.bytes["hbm_write"], "energy_j": r.energy_total_j}
        for (name, kind), r in zip(mapped.lowered.kernels, parts)]
    mapped.notes["kernel_results"] = parts  # taken by run_phase (not part of the notes)
    return sequence(parts)


def _each(fn, items: list, show: bool, unit: str) -> list:  # noqa: ANN001
    """``[fn(x) for x in items]`` side by side (``experiments.pieces``: the kernels of a
    phase are simulated alone, so independently), under a progress bar."""
    from experiments.pieces import each

    return each(fn, items, lambda done, n: _bar(done, show, unit, n))


def _bar(items, show: bool, unit: str, total: int | None = None):  # noqa: ANN001, ANN202
    """``items`` under a progress bar on stderr when ``show`` (and stderr is a terminal);
    ``total`` for an iterator of known length."""
    if not show:
        return items
    from tqdm import tqdm

    return tqdm(items, unit=unit.rstrip("s"), file=sys.stderr, leave=False, disable=None,
                total=total)


def _keyed(programs) -> dict:  # noqa: ANN001
    """{core: program} (or one program) as {(chip, core): program}."""
    if isinstance(programs, dict):
        return {k if isinstance(k, tuple) else (0, k): p for k, p in programs.items()}
    return {(0, 0): programs}


def write_asm(programs: dict, folder: Path, prefix: str) -> None:
    """One canonical assembly file per core (it assembles back to the same program)."""
    from assembler import disassemble

    folder.mkdir(parents=True, exist_ok=True)
    for core, prog in programs.items():
        (folder / f"{prefix}_core{core:03d}.s").write_text(disassemble(prog))


def run_model(model, chip: ChipConfig, mode: str, batch: int, seq: int, ctx: int,  # noqa: ANN001
              tokens: int, opts: MapOptions, decode_samples: int = 8,
              trace: bool = False, emit_asm: Path | None = None, system=None,  # noqa: ANN001
              par=None, budget: Budget = DEFAULT_BUDGET, check_memory: bool = True,  # noqa: ANN001
              allow_long_context: bool = False, warn=None,  # noqa: ANN001
              note=None, compose: bool = False) -> RunReport:  # noqa: ANN001
    """A mode of ``tessera run``; with ``system`` and ``par`` the model is split over chips.
    Before anything is mapped, the context is checked against the model's positions and
    each phase's memory per chip against HBM (``check_memory``), and the work estimated
    against the instruction budget. ``warn`` and ``note`` (str -> None) hear of a long
    context and of a run long enough to show progress; without ``note``, no bar. With
    ``compose`` (sweeps), a prefill or decode phase that can be is priced from its kernels'
    costs (``composed_phase``), with the same figures and no programs kept."""
    work, warning = admit(model, chip, mode, batch, seq, ctx, tokens, opts, system, par,
                          decode_samples, budget.limits.max_instructions, check_memory,
                          allow_long_context)
    if warning and warn is not None:  # only for a run that goes ahead
        warn(warning)
    if seconds(work) > PROGRESS_AFTER_S and note is not None:
        budget = replace(budget, progress=True)
        note(f"simulating at least {work:.3g} instructions (about {seconds(work):.0f} s or "
             f"more)")

    def phase_run(model, chip, phase, opts, trace=False, emit_asm=None):  # noqa: ANN001
        if compose and mode != "generate" and composable(model, opts, trace, emit_asm,
                                                          system):
            return composed_phase(model, chip, phase, opts)
        if system is not None:
            return run_system_phase(model, system, phase, par, opts, trace, budget)
        return run_phase(model, chip, phase, opts, trace, emit_asm, budget)
    rep = RunReport(model.name, chip.name if system is None else system.name, mode)
    rep.notes["memory_per_chip"] = memory(model, chip, mode, batch, seq, ctx, tokens, opts,
                                          system, par)
    if warning:
        rep.notes["warnings"] = [warning]
    if mode in ("prefill", "generate"):
        rep.prefill = phase_run(model, chip, Phase("prefill", batch, seq=seq), opts, trace,
                                emit_asm)
    if mode == "decode":
        rep.decode = [phase_run(model, chip, Phase("decode", batch, ctx=ctx), opts, trace,
                                emit_asm)]
        rep.decode_tokens = 1
    if mode == "generate":
        points = decode_points(seq, tokens, decode_samples)
        first = phase_run(model, chip, Phase("decode", batch, ctx=points[0]), opts)
        derived = [None] * (len(points) - 1)
        if len(points) > 1 and decode_steps.supported(model, opts, par):
            derived = decode_steps.steps(
                model, first, points[1:], opts, chip if system is None else system.chips[0],
                system, par, budget.limits, first.kernels, _bar if budget.progress else None)
        rep.decode = [first] + [d or phase_run(model, chip, Phase("decode", batch, ctx=c), opts)
                                for c, d in zip(points[1:], derived)]
        rep.decode_tokens = tokens
        rep.decode_interpolated = len(points) < tokens
    return rep


def weight_bytes(mapped) -> int:  # noqa: ANN001
    """Bytes of the projection weights of the mapped layers (as stored: codes, blocks)."""
    g = mapped.graph
    return sum(g.tensors[t].nbytes for n in g.nodes if n.op == Op.LINEAR
               for t in n.inputs[1:2])


def output_error(run: PhaseRun, base: PhaseRun) -> float:
    """Max |difference| of the last layer's output, relative to the baseline's largest value
    (functional runs only)."""
    from isa import Space
    from isa import numerics as nx

    vals = []
    for r in (run, base):
        name = f"x{len([n for n in r.mapped.graph.nodes if n.op == 'rename'])}"
        t = r.mapped.graph.tensors[name]
        raw = r.layer.read(Space.HBM, r.mapped.lowered.addresses[name], t.nbytes)
        vals.append(nx.from_bytes(raw, t.dtype, t.elements).astype(float))
    return float(abs(vals[0] - vals[1]).max() / max(abs(vals[1]).max(), 1e-30))


def compression_report(run: PhaseRun, base: PhaseRun, functional: bool) -> dict[str, float]:
    """What a compression scheme changes, against the same run uncompressed."""
    out = {"weight_bytes": weight_bytes(run.mapped) * run.repeat,
           "weight_bytes_baseline": weight_bytes(base.mapped) * base.repeat,
           "hbm_bytes": (run.layer.bytes["hbm_read"] + run.layer.bytes["hbm_write"]) * run.repeat,
           "hbm_bytes_baseline": (base.layer.bytes["hbm_read"] + base.layer.bytes["hbm_write"])
           * base.repeat,
           "latency_s": run.latency_s, "latency_s_baseline": base.latency_s,
           "energy_j": run.energy_j, "energy_j_baseline": base.energy_j,
           "flops": run.flops, "flops_baseline": base.flops}
    if functional:
        out["output_error"] = output_error(run, base)
    return out


def run_system_phase(model, system, phase: Phase, par, opts: MapOptions,  # noqa: ANN001
                     trace: bool = False, budget: Budget = DEFAULT_BUDGET) -> PhaseRun:
    """One phase of the whole model on a system: layers split TP x PP x DP. Without
    pipelining, kernel by kernel (each ends in a barrier of its tensor-parallel group);
    with it, the stages' whole programs in one run. The head is vocabulary-parallel over
    the last stage's tensor-parallel group (its logits all-gathered)."""
    from mapper.parallel import chip_of, map_system
    from simulator.run import simulate_system

    t0 = time.perf_counter()
    chip = system.chips[0]
    m = map_system(model, list(system.chips), phase, par, opts,
                   confirm=confirmer(chip))
    head_chips = [chip_of(par, 0, par.pp - 1, r) for r in range(par.tp)]
    head = lower(build_head(model, replace(phase, batch=phase.batch // par.dp), tp=par.tp,
                            group=1), chip, barrier_group=1 if par.tp > 1 else 0)
    t1 = time.perf_counter()
    kernels = m.kernel_programs and not opts.functional
    if trace:
        runs = m.kernel_programs if kernels else [m.programs]
        check_trace(sum(trace_size(k, not opts.functional) for k in runs),
                    budget.max_trace_events)
    parts = []
    if kernels:
        parts = [simulate_system(system, k, groups=m.groups, trace=trace, limits=budget.limits,
                                 aliases=m.aliases)
                 for k in _bar(m.kernel_programs, budget.progress, "kernels")] if trace else \
            _each(lambda k: simulate_system(system, k, groups=m.groups, limits=budget.limits,
                                            aliases=m.aliases),
                  m.kernel_programs, budget.progress, "kernels")
        layer = sequence(parts)
    else:
        layer = simulate_system(system, m.programs, groups=m.groups,
                                functional=opts.functional, trace=trace, limits=budget.limits,
                                memory_limit=budget.memory_limit, aliases=m.aliases)
    head_r = simulate(head.programs, chip) if par.tp == 1 else simulate_system(
        system, {(c, core): p for c in head_chips for core, p in head.programs.items()},
        groups={1: head_chips})
    t2 = time.perf_counter()
    return PhaseRun(phase, layer, head_r, int(round(m.layer_factor)), t1 - t0, t2 - t1,
                    mapped=m, kernels=parts)
