"""The language: expressions, literals, directives, includes, macros."""

from __future__ import annotations

import pytest

from assembler import AsmError, assemble, assemble_file


def value(expr: str) -> int:
    return assemble(f".equ X, {expr}\n").constants["X"]


@pytest.mark.parametrize("expr, expected", [
    ("1 + 2 * 3", 7), ("(1 + 2) * 3", 9), ("1 << 4 + 1", 32), ("-7 / 2", -3), ("7 / -2", -3),
    ("0x10_000", 0x10000), ("0b1010_1010", 0xAA), ("64KiB", 65536), ("2MiB", 2 << 20),
    ("1GiB / 4", 1 << 28), ("1_000_000", 1000000), ("--3", 3), ("256 >> 2 - 1", 128),
])
def test_expressions(expr, expected):
    assert value(expr) == expected


def test_constants_may_refer_forward_and_to_labels():
    p = assemble(".equ END2, end * 2\n  nop\n  nop\nend: halt\n")
    assert p.constants["END2"] == 4


def test_comments_and_blank_lines():
    p = assemble("; comment\n\n  nop   # another\nx:\n  halt ; done\n")
    assert [i.mnemonic for i in p.instructions] == ["nop", "halt"] and p.labels == {"x": 1}


def test_macros_with_parameters_and_nesting():
    src = """.macro SIG e, n
    sem.signal \\e, \\n
.endm
.macro PAIR n
    SIG mx, \\n
    SIG vec, \\n + 1
.endm
start: PAIR 4
"""
    p = assemble(src)
    assert [(i.mnemonic, i.operand("eng"), i.operand("sem")) for i in p.instructions] == \
        [("sem.signal", "mx", 4), ("sem.signal", "vec", 5)]
    assert p.labels == {"start": 0}


def test_recursive_macro_is_stopped():
    with pytest.raises(AsmError, match="macro expansion deeper than 16"):
        assemble(".macro R\n  R\n.endm\n  R\n")


def test_macro_argument_count():
    with pytest.raises(AsmError, match="macro 'M' takes 1 argument"):
        assemble(".macro M x\n  nop\n.endm\n  M 1, 2\n")


def test_include_is_relative_to_the_including_file(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "consts.s").write_text(".equ TILE, 32\n")
    (tmp_path / "main.s").write_text('.include "lib/consts.s"\n  sem.wait mx, TILE\n')
    p = assemble_file(tmp_path / "main.s")
    assert p.instructions[0].operand("sem") == 32


def test_data_directives():
    p = assemble(".data sram, 0x100\n  .i8 -1, 2\n  .align 4\n  .f32 0.5\n  .zero 2\n"
                 "  .fp16 1.0\n")
    seg = p.data[0]
    assert seg.addr == 0x100
    assert seg.data == bytes([0xFF, 2, 0, 0]) + bytes.fromhex("0000003f") + bytes(2) + \
        bytes.fromhex("003c")


def test_instruction_in_data_section_is_an_error():
    with pytest.raises(AsmError, match="inside a .data section"):
        assemble(".data hbm, 0\n  nop\n")
