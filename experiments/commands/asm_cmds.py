"""``tessera isa``, ``tessera asm`` and ``tessera disasm``: the ISA toolchain commands."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from isa.binary import read_binary, write_binary
from isa.docs import isa_markdown, isa_text


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("isa", help="print the instruction table",
                       description="Print the instruction table (mnemonic, opcode, engine, "
                                   "operands); --markdown prints the full reference page.")
    p.add_argument("--markdown", action="store_true", help="print docs/isa.md instead")
    p.set_defaults(handler=_isa)

    p = sub.add_parser("asm", help="assemble a program to a binary",
                       description="Assemble FILE.s into a binary program. Errors are printed "
                                   "as file:line:col with the line and a caret; all errors of "
                                   "the file are reported in one run.")
    p.add_argument("source", type=Path, help="assembly source file (.s)")
    p.add_argument("-o", "--output", type=Path,
                   help="binary to write (default: the source with .bin)")
    p.set_defaults(handler=_asm)

    p = sub.add_parser("disasm", help="print a binary program as assembly",
                       description="Disassemble FILE.bin into canonical assembly text, which "
                                   "re-assembles to the identical binary.")
    p.add_argument("binary", type=Path, help="binary program (.bin)")
    p.add_argument("-o", "--output", type=Path, help="write the text here instead of stdout")
    p.set_defaults(handler=_disasm)


def _isa(args: argparse.Namespace) -> int:
    sys.stdout.write(isa_markdown() if args.markdown else isa_text() + "\n")
    return 0


def _asm(args: argparse.Namespace) -> int:
    from assembler import assemble_file

    program = assemble_file(args.source)
    out = args.output or args.source.with_suffix(".bin")
    data = write_binary(program)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    print(f"{args.source}: {len(program)} instructions, {len(data)} bytes -> {out}")
    return 0


def _disasm(args: argparse.Namespace) -> int:
    from assembler import disassemble

    program = read_binary(args.binary.read_bytes(), str(args.binary))
    text = disassemble(program)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
    else:
        sys.stdout.write(text)
    return 0
