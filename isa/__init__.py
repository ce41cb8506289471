"""The Tessera tensor ISA: one table of instructions and everything derived from it."""

from isa.binary import read_binary, write_binary
from isa.dtypes import DType
from isa.encoding import decode, encode
from isa.errors import DecodeError, TesseraError
from isa.operands import Engine, MemRef, OperandError, Space
from isa.program import DataSegment, Instruction, Program, build
from isa.table import BY_MNEMONIC, BY_OPCODE, TABLE, OpSpec

__all__ = [
    "BY_MNEMONIC", "BY_OPCODE", "TABLE", "DType", "DataSegment", "DecodeError", "Engine",
    "Instruction", "MemRef", "OpSpec", "OperandError", "Program", "Space", "TesseraError",
    "build", "decode", "encode", "read_binary", "write_binary",
]
