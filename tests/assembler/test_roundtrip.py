"""Text -> binary -> text round trips exactly, for every instruction of the table."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from assembler import assemble, disassemble
from isa import TABLE, MemRef, Program, Space
from isa.binary import read_binary, write_binary
from isa.encoding import encode_words
from isa.operands import F32, AReg, Choice, DTypeKind, Flags, Label, Mem, SInt, UInt
from isa.program import build
from isa.table import OpSpec


def operand_values(spec: OpSpec, n_instructions: int):
    """A strategy of valid operand values for ``spec`` (labels inside the program)."""
    parts = []
    for op in spec.operands:
        k = op.kind
        if isinstance(k, UInt):
            parts.append(st.integers(k.lo, k.top))
        elif isinstance(k, SInt):
            parts.append(st.integers(-(1 << (k.bits - 1)), (1 << (k.bits - 1)) - 1))
        elif isinstance(k, Label):
            parts.append(st.integers(1, n_instructions))
        elif isinstance(k, Choice):
            parts.append(st.sampled_from(k.names))
        elif isinstance(k, DTypeKind):
            parts.append(st.sampled_from(["int4", "int8", "fp8e4m3", "fp8e5m2", "bf16", "fp16",
                                          "fp32", "int32"]))
        elif isinstance(k, Flags):
            parts.append(st.sets(st.sampled_from(k.names)).map(lambda s: tuple(sorted(s))))
        elif isinstance(k, F32):
            parts.append(st.floats(width=32, allow_nan=False, allow_infinity=False))
        elif isinstance(k, AReg):
            parts.append(st.one_of(st.none(), st.integers(0, 7)))
        elif isinstance(k, Mem):
            parts.append(st.builds(MemRef, st.sampled_from(k.spaces),
                                   st.integers(0, (1 << 40) - 1),
                                   st.one_of(st.none(), st.integers(0, 7))))
        else:  # pragma: no cover
            raise AssertionError(type(k))
    return st.tuples(*parts)


@settings(max_examples=12, deadline=None)  # benchmarks/fuzz_long.py --only asm runs thousands
@given(st.data())
def test_every_instruction_round_trips(data):
    for spec in TABLE:
        values = data.draw(operand_values(spec, 3), label=spec.mnemonic)
        ins = build(spec.mnemonic, *values)
        program = Program((ins, build("nop"), build("nop")))
        text = disassemble(program)
        first = assemble(text)
        assert encode_words(first.instructions).tolist() == encode_words((ins,)).tolist() + \
            encode_words((build("nop"),) * 2).tolist()
        bin1 = write_binary(first)
        again = assemble(disassemble(read_binary(bin1)))
        assert write_binary(again) == bin1
        assert disassemble(again) == text


def test_labels_constants_and_data_round_trip():
    src = """.equ TILE, 64
top:
    loop 4, done, a0, TILE * 2
    dma.load sram[0x100], hbm[0x1000 + a0], bf16, TILE, 64, stride=4096
done:
    halt
.data hbm, 0x40
weights: .bf16 1.0, -2.5
    .i32 7
"""
    p = assemble(src)
    assert p.labels == {"top": 0, "done": 2}
    assert p.constants == {"TILE": 64, "weights": 0x40}
    assert p.data[0].data == bytes([0x80, 0x3F, 0x20, 0xC0, 7, 0, 0, 0])
    b = write_binary(p)
    assert write_binary(assemble(disassemble(read_binary(b)))) == b


def test_unnamed_jump_targets_get_local_labels_that_are_not_exported():
    p = Program((build("loop", 2, 2), build("nop"), build("halt")))
    text = disassemble(p)
    assert "loop 2, .L2" in text and ".L2:" in text
    assert assemble(text).labels == {}
    assert write_binary(assemble(text)) == write_binary(p)


def test_addresses_with_registers():
    p = assemble("dma.load sram[a3], hbm[0x40 + a2], bf16, 1, 1\n")
    ins = p.instructions[0]
    assert ins.operand("dst") == MemRef(Space.SRAM, 0, 3)
    assert ins.operand("src") == MemRef(Space.HBM, 0x40, 2)
