"""``tessera sim``: run one program on a chip and report time, energy and utilization."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from isa.program import Program
from simulator.tracesize import MAX_TRACE_EVENTS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sim", help="simulate a program on a chip",
        description="Simulate PROGRAM (.s assembly or .bin binary) on core 0 of a chip and "
                    "print latency, energy and per-engine utilization. --functional also "
                    "moves and computes the real bytes and reports data races.")
    p.add_argument("program", type=Path, help="program: FILE.s or FILE.bin")
    p.add_argument("--chip", default="edge",
                   help="chip preset (see 'tessera presets') or chip YAML file (default: edge)")
    p.add_argument("--functional", action="store_true", help="compute real values too")
    p.add_argument("--trace", type=Path, help="write a Chrome trace JSON (open in Perfetto)")
    p.add_argument("--out", type=Path, help="write the result as JSON here")
    p.add_argument("--json", action="store_true", help="print the result as one JSON line last")
    p.add_argument("--max-time", type=float, default=3600.0,
                   help="simulated-seconds budget (default 3600)")
    p.add_argument("--max-instructions", type=int, default=2_000_000_000,
                   help="dynamic instruction budget (default 2e9)")
    p.add_argument("--memory-limit", type=int, default=8 << 30,
                   help="bytes functional mode may allocate (default 8 GiB)")
    p.add_argument("--max-trace-events", type=int, default=MAX_TRACE_EVENTS,
                   help=f"refuse a --trace of more events (default {MAX_TRACE_EVENTS:,})")
    p.set_defaults(handler=run)


def load_program(path: Path) -> Program:
    if path.suffix == ".bin":
        from isa.binary import read_binary

        return read_binary(path.read_bytes(), str(path))
    from assembler import assemble_file

    return assemble_file(path)


def run(args: argparse.Namespace) -> int:
    from experiments.summary import sim_summary
    from hardware.chips import load_chip
    from simulator.engine.machine import RunLimits
    from simulator.run import simulate

    program = load_program(args.program)
    chip = load_chip(args.chip)
    limits = RunLimits(max_time_s=args.max_time, max_instructions=args.max_instructions)
    if args.trace:
        from simulator.tracesize import check_trace, trace_size

        check_trace(trace_size({(0, 0): program}), args.max_trace_events)
        args.trace.parent.mkdir(parents=True, exist_ok=True)  # before the run, not after
    result = simulate(program, chip, functional=args.functional, trace=bool(args.trace),
                      limits=limits, memory_limit=args.memory_limit)
    print(sim_summary(result, str(args.program)))
    if args.trace:
        args.trace.write_text(json.dumps(result.chrome_trace()))
        print(f"trace: {args.trace} ({len(result.trace or ())} events)")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(result.to_json())
        print(f"result: {args.out}")
    if args.json:
        print(json.dumps({"latency_s": result.time_s, "energy_j": result.energy_total_j,
                          "races": len(result.races)}))
    return 2 if result.races else 0
