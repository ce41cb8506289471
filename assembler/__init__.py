"""Tessera assembly: text <-> ``Program`` (and, through ``isa.binary``, binary files)."""

from assembler.assembler import assemble, assemble_file
from assembler.diagnostics import AsmError, Diagnostic
from assembler.disassembler import disassemble

__all__ = ["AsmError", "Diagnostic", "assemble", "assemble_file", "disassemble"]
