"""The ``tessera`` command: one entry point, a sub-command per job, user errors as one line."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from experiments.commands import (
    asm_cmds,
    cache_cmd,
    presets_cmd,
    report_cmd,
    run_cmd,
    serve_cmd,
    sim_cmd,
    study_cmd,
    sweep_cmd,
    train_cmd,
    validate_cmd,
)
from isa.errors import TesseraError

COMMANDS = (asm_cmds, cache_cmd, presets_cmd, sim_cmd, run_cmd, train_cmd, serve_cmd,
            sweep_cmd,
            report_cmd, study_cmd, validate_cmd)

DESCRIPTION = """\
Tessera: an architecture simulator and tensor-ISA toolchain for transformer workloads.

Typical uses:
  tessera isa                         print the instruction table
  tessera presets                     the chips, systems and models, with key figures
  tessera asm kernel.s -o kernel.bin  assemble a program
  tessera disasm kernel.bin           print a binary program as assembly
  tessera sim kernel.s --chip h100    simulate it: latency, energy, utilization
  tessera run --model llama2-7b --chip h100 --phase decode --batch 8 --ctx 2048
  tessera train --model llama2-7b --chip h100 --seq 2048 --micro-batch 1
  tessera serve --model llama3-8b --chip h200 --rate 4 --requests 500 --slo-ttft 1
  tessera sweep study.yaml            a design-space sweep (then: tessera report)
  tessera study quickstart            a bundled study: sweep + report in one command
  tessera cache info                  the kernel-cost cache (--no-cache on any command)

Run 'tessera COMMAND --help' for the options of each command."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tessera", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true",
                        help="show the Python traceback of an error (for developers)")
    parser.add_argument("--version", action="version", version=f"tessera {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS:
        module.register(sub)
    for command in sub.choices.values():  # --debug after the sub-command too
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                             help="show the Python traceback of an error (for developers)")
        command.add_argument("--no-cache", action="store_true", default=False,
                             help="simulate every kernel, neither reading nor writing the "
                                  "kernel-cost cache")
        command.add_argument("--cache-dir", metavar="DIR",
                             help="the kernel-cost cache folder (default: $TESSERA_CACHE_DIR "
                                  "or ~/.cache/tessera)")
    return parser


def _cache_options(args: argparse.Namespace) -> dict[str, str]:
    """The cache flags, as the environment that this process and its workers read; the
    environment as it was."""
    from simulator.cache import ENV_DIR, ENV_OFF

    saved = dict(os.environ)
    if getattr(args, "no_cache", False):
        os.environ[ENV_OFF] = "1"
    if getattr(args, "cache_dir", None):
        os.environ[ENV_DIR] = str(args.cache_dir)
    return saved


def version() -> str:
    """The installed package's version (the one ``pyproject.toml`` states)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("tessera-sim")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    saved = _cache_options(args)
    try:
        return _handle(args)
    finally:  # an in-process caller (a test, a notebook) gets its environment back
        os.environ.clear()
        os.environ.update(saved)


def _handle(args: argparse.Namespace) -> int:
    try:
        return int(args.handler(args) or 0)
    except TesseraError as exc:
        if args.debug:
            raise
        print(f"tessera {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # the reader went away (`tessera presets | head`): not an error
        sys.stderr.close()
        return 0
    except OSError as exc:
        if args.debug:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"tessera {args.command}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"tessera {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
