"""``tessera run``: a model on a chip, for a phase; a summary, a results folder, --json."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from experiments.commands import DefaultsHelp, add_routing_args, chip_or_system, routed
from isa.errors import TesseraError
from mapper.pipeline import option


class RunError(TesseraError):
    """Bad options for a run (named in the message)."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run", help="map and simulate a transformer model on a chip",
        formatter_class=DefaultsHelp,
        description="Lower MODEL to per-core programs for CHIP and simulate them. prefill: B "
                    "sequences of --seq tokens; decode: one token per sequence against a KV "
                    "cache of --ctx tokens; generate: prefill then --tokens decode steps.")
    p.add_argument("--model", default="llama2-7b",
                   help="preset name, model YAML or Hugging Face config.json")
    add_routing_args(p)
    p.add_argument("--chip", default="h100", help="chip preset name or YAML (default h100)")
    p.add_argument("--system", help="a multi-chip system preset or YAML (instead of --chip): "
                                    "h100x4, h100x8, h200x2, h200x4, tpuv4-4x4x4, edge-ring16")
    p.add_argument("--tp", type=int, default=1, help="tensor-parallel degree (with --system)")
    p.add_argument("--pp", type=int, default=1, help="pipeline-parallel stages (with --system)")
    p.add_argument("--dp", type=int, default=1, help="data-parallel replicas (with --system)")
    p.add_argument("--ep", type=int, default=1, help="expert-parallel degree (MoE models)")
    p.add_argument("--sp", action="store_true",
                   help="Megatron sequence parallelism: norms and residuals on tokens / tp "
                        "rows, reduce-scatter and all-gather instead of all-reduce (with --tp)")
    p.add_argument("--cp", type=int, default=1,
                   help="context-parallel degree: a prefill's tokens split over chips, keys "
                        "and values all-gathered (ring attention's bytes; with --system)")
    p.add_argument("--micro-batches", type=int, default=1, metavar="M",
                   help="split each replica's batch into M micro-batches through the "
                        "pipeline stages")
    p.add_argument("--phase", choices=("prefill", "decode", "generate"), default="decode",
                   help="prefill: the prompts; decode: one token per sequence; generate: "
                        "prefill then --tokens decode steps (TTFT, TPOT)")
    p.add_argument("--batch", type=int, default=1,
                   help="sequences processed together (split over --dp replicas)")
    p.add_argument("--seq", type=int, default=512, help="prompt length (prefill, generate)")
    p.add_argument("--ctx", type=int, default=2048, help="KV-cache length (decode)")
    p.add_argument("--tokens", type=int, default=32, help="decode steps (generate)")
    p.add_argument("--allow-long-context", action="store_true",
                   help="price positions past the model's max_seq even with a learned "
                        "position table (RoPE models only get a warning)")
    _mapping_flag(p, "--quant", "quant")
    _mapping_flag(p, "--quant-group", "quant_group", metavar="G")
    _mapping_flag(p, "--act-quant", "act_quant")
    p.add_argument("--quant-layers", metavar="LIST",
                   help=option("quant_layers").metadata["help"] + ", e.g. 0-3,30,31")
    _mapping_flag(p, "--sparsity", "sparsity")
    _mapping_flag(p, "--low-rank", "low_rank", metavar="R")
    _mapping_flag(p, "--kernels", "kernels")
    p.add_argument("--no-fusion", action="store_true",
                   help="do not " + option("fusion").metadata["help"].split(";")[0])
    p.add_argument("--functional", action="store_true",
                   help=option("functional").metadata["help"])
    p.add_argument("--decode-samples", type=int, default=0,
                   help="generate: 0 simulates every decode step exactly (each step "
                        "after the first re-simulates only the kernels the context "
                        "changes); N simulates N context lengths, linear between them")
    _mapping_flag(p, "--seed", "seed")
    p.add_argument("--trace", type=Path, help="Chrome trace of the (first) simulated phase")
    p.add_argument("--emit-asm", type=Path, metavar="DIR",
                   help="write each core's program of the (first) phase as assembly to DIR")
    p.add_argument("--out", type=Path, default=Path("results/run"),
                   help="results folder (default results/run)")
    p.add_argument("--json", action="store_true", help="print the headline metrics as JSON last")
    p.add_argument("--max-time", type=float, default=3600.0,
                   help="simulated-seconds budget of each simulation (default 3600)")
    p.add_argument("--max-instructions", type=int, default=50_000_000,
                   help="instruction budget: a run estimated to need more is refused before "
                        "it is mapped, a simulation that executes more is stopped")
    p.add_argument("--memory-limit", type=int, default=8 << 30,
                   help="bytes functional mode may allocate (default 8 GiB)")
    p.add_argument("--max-trace-events", type=int, default=5_000_000,
                   help="refuse a --trace of more events (default 5,000,000)")
    p.set_defaults(handler=run)


def _mapping_flag(p: argparse.ArgumentParser, flag: str, name: str, **kw: object) -> None:
    """A flag for mapping option ``name``: type, default, choices and help from its field."""
    f = option(name)
    choices = f.metadata["choices"]
    kind = type(f.default) if f.default is not None else str
    p.add_argument(flag, type=kind, default=f.default, choices=choices,
                   help=f.metadata["help"], **kw)


def parse_layers(text: str | None) -> tuple[int, ...] | None:
    """'0-3,30' -> (0, 1, 2, 3, 30); a bad list is a RunError naming the option."""
    if text is None:
        return None
    out: list[int] = []
    try:
        for part in text.split(","):
            lo, _, hi = part.strip().partition("-")
            out.extend(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise RunError(f"--quant-layers: expected a list like 0-3,30, got '{text}'") from None
    return tuple(out)


def _check(args: argparse.Namespace) -> None:
    for name in ("batch", "seq", "ctx", "tokens"):
        if getattr(args, name) < 1:
            raise RunError(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.low_rank < 0:
        raise RunError(f"--low-rank must be positive, got {args.low_rank}")
    for name in ("max_time", "max_instructions", "memory_limit", "max_trace_events"):
        if getattr(args, name) <= 0:
            raise RunError(f"--{name.replace('_', '-')} must be positive, got "
                           f"{getattr(args, name)}")


def run(args: argparse.Namespace) -> int:
    from experiments import api
    from experiments.run import Budget
    from experiments.summary import run_summary
    from hardware.systems import list_systems
    from mapper.model import load_model
    from mapper.passes import PassError
    from mapper.pipeline import MapOptions
    from simulator.engine.machine import RunLimits

    _check(args)
    model = routed(load_model(args.model), args)
    chip, system = chip_or_system(args)  # a system name as --chip: an error saying --system
    if system is None:
        if (args.tp, args.pp, args.dp) != (1, 1, 1):
            raise RunError("--tp/--pp/--dp need a multi-chip --system (presets: "
                           f"{', '.join(list_systems())})")
    if (args.ep != 1 or args.cp != 1 or args.sp) and not args.system:
        raise RunError("--ep, --cp and --sp need a multi-chip --system")
    opts = MapOptions(quant=args.quant, quant_group=args.quant_group, act_quant=args.act_quant,
                      quant_layers=parse_layers(args.quant_layers), sparsity=args.sparsity,
                      low_rank=args.low_rank, kernels=args.kernels,
                      fusion=not args.no_fusion, functional=args.functional, seed=args.seed,
                      layers_mapped=None if args.functional else 1)
    from dataclasses import replace as copy

    from simulator.cache import current

    store = current()
    before = copy(store.stats) if store is not None else None
    try:
        report = api.run(model, chip, system=system, phase=args.phase, batch=args.batch,
                         seq=args.seq, ctx=args.ctx, tokens=args.tokens, tp=args.tp,
                         pp=args.pp, dp=args.dp, ep=args.ep, micro_batches=args.micro_batches,
                         cp=args.cp, sp=args.sp,
                         options=opts, decode_samples=args.decode_samples,
                         budget=Budget(RunLimits(args.max_time, args.max_instructions),
                                       args.memory_limit, args.max_trace_events),
                         allow_long_context=args.allow_long_context, trace=bool(args.trace),
                         emit_asm=args.emit_asm, warn=_warn, note=_note)
    except (PassError, ValueError) as exc:
        raise RunError(str(exc)) from None
    compressed = args.quant or args.sparsity or args.low_rank
    if compressed and system is None:
        _compare(report, model, chip, opts, args)
    print(run_summary(report))
    if store is not None:
        print(store.stats.since(before).line())
    _write(report, args)
    if args.functional and system is None:
        _functional(model, report, args.out)
    if args.json:
        print(json.dumps({**report.headline(), **report.notes.get("uncertainty", {})}))
    return 0


def _warn(text: str) -> None:
    print(f"tessera run: warning: {text}", file=sys.stderr)


def _functional(model, report, out: Path) -> None:  # noqa: ANN001
    """A few real output values of the first phase and their check against numpy."""
    from experiments.functional_check import check, describe

    first = report.prefill or report.decode[0]
    if getattr(model.arch, "value", model.arch) != "decoder":
        print(f"functional: outputs in HBM; no numpy reference for {model.arch.value} models")
        return
    print(describe(check(model, first), out))


def _note(text: str) -> None:
    print(f"tessera run: {text}", file=sys.stderr)


def _compare(report, model, chip, opts, args: argparse.Namespace) -> None:  # noqa: ANN001
    """Run the same phase uncompressed and record what the scheme changed."""
    from dataclasses import replace

    from experiments.run import compression_report, run_phase

    first = report.prefill or report.decode[0]
    base_opts = replace(opts, quant=None, act_quant=None, quant_layers=None, sparsity=None,
                        low_rank=0)
    base = run_phase(model, chip, first.phase, base_opts)
    report.notes["compression"] = compression_report(first, base, opts.functional)


def _hbm_bw(args: argparse.Namespace) -> float:
    from hardware.chips import load_chip

    if args.system:
        from hardware.systems import load_system

        return load_system(args.system).chips[0].hbm_effective_bw
    return load_chip(args.chip).hbm_effective_bw


def _write(report, args: argparse.Namespace) -> None:  # noqa: ANN001
    from experiments.sweep.runner import versions

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    runs = ([report.prefill] if report.prefill else []) + report.decode
    rows = [{"phase": r.phase.kind, "batch": r.phase.batch, "seq": r.phase.seq,
             "ctx": r.phase.ctx, "latency_s": r.latency_s, "energy_j": r.energy_j,
             "layer_s": r.layer.time_s, "head_s": r.head.time_s, "layers": r.repeat,
             "mac_utilization": r.layer.mac_utilization, "clock_hz": r.layer.clock_hz,
             "map_wall_s": r.map_wall_s, "sim_wall_s": r.sim_wall_s} for r in runs]
    with open(out / "phases.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    chip_peak = {"peak_flops": 2 * runs[0].layer.peak_macs_per_s,
                 "hbm_bandwidth": _hbm_bw(args)}
    doc = {"model": report.model, "chip": report.chip, "mode": report.mode, **chip_peak,
           "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                       if k not in ("handler",)},
           "headline": report.headline(), "scope": report.scope, "totals": report.totals(),
           "versions": versions(), "decode_interpolated": report.decode_interpolated,
           "notes": report.notes,
           "phases": [{**row, "layer_result": r.layer.to_dict(), "head_result": r.head.to_dict(),
                       "kernels": getattr(r.mapped, "notes", {}).get("kernels", [])}
                      for row, r in zip(rows, runs)]}
    (out / "result.json").write_text(json.dumps(doc, indent=2, default=str))
    if args.trace and runs:
        args.trace.parent.mkdir(parents=True, exist_ok=True)
        trace = json.dumps(runs[0].layer.chrome_trace())
        args.trace.write_text(trace)
        (out / "trace.json").write_text(trace)
    print(f"results: {out}/result.json, {out}/phases.csv")
