"""Every diagnostic names file, line and column, shows the line with a caret, and all of a
file's errors come in one run."""

from __future__ import annotations

import pytest

from assembler import AsmError, assemble, assemble_file


def errors(src: str, name: str = "k.s") -> list:
    with pytest.raises(AsmError) as info:
        assemble(src, name)
    return info.value.diagnostics


@pytest.mark.parametrize("src, line, col, message", [
    ("nop\n  mm acc[0],, sram[0]\n", 2, 13, "syntax error: unexpected ','"),
    ("  dma.lod sram[0], hbm[0], bf16, 1, 1\n", 1, 3,
     "unknown mnemonic 'dma.lod' (did you mean 'dma.load'?)"),
    ("  v.relu sram[0], sram[0], 70000, 1, bf16, bf16\n", 1, 28,
     "operand 'rows': value 70000 out of range 1..65535"),
    ("  mm acc[0], hbm[0], sram[0], 16, 16, 16, bf16, bf16\n", 1, 14,
     "operand 'a': must be in sram, not hbm"),
    ("  loop 3, nowhere\n  nop\n", 1, 11, "undefined symbol 'nowhere'"),
    ("x: nop\nx: nop\n", 2, 1, "duplicate label 'x'"),
    ("  nop 4\n", 1, 7, "nop takes no operands"),
    ("  mm acc[0], sram[0], sram[0], 16, 16\n", 1, 3, "mm: missing operand 'n'"),
    ("  dma.load sram[0], hbm[0], bf16, 1, 1, strid=4\n", 1, 41,
     "dma.load has no operand 'strid' (did you mean 'stride'?)"),
    ("  v.relu sram[0], sram[0], 1, 1, bf17, bf16\n", 1, 34, "unknown data type 'bf17'"),
    ("  dma.load sram[0], hbm[1 / 0], bf16, 1, 1\n", 1, 29, "division by zero"),
    ("  dma.load fast[0], hbm[0], bf16, 1, 1\n", 1, 12, "unknown memory space 'fast'"),
    (".frob 3\n", 1, 1, "unknown directive '.frob'"),
    (".equ A, B + 1\n.equ B, A\n  sem.wait mx, A\n", 1, 9, "'B' is defined in terms of itself"),
    ("  v.add sram[0], sram[0], sram[0], 1, 1, bf16, bf16, bf16, diag\n", 1, 60,
     "operand 'bcast': expected one of none, row, col, scalar; got 'diag'"),
])
def test_each_diagnostic(src, line, col, message):
    d = errors(src)[0]
    assert (d.file, d.line, d.col) == ("k.s", line, col)
    assert message in d.message
    text = str(d)
    assert text.startswith(f"k.s:{line}:{col}: ")
    source, caret = text.split("\n")[1:3]
    assert source == src.split("\n")[line - 1] and caret == " " * (col - 1) + "^"


def test_all_errors_of_a_file_in_one_run():
    src = "  foo 1\nok: nop\n  mm acc[0], hbm[0], sram[0], 1, 1, 1, bf16, bf16\n  nop ,\n"
    lines = [d.line for d in errors(src)]
    assert lines == [1, 3, 4]


def test_macro_errors_point_at_the_invocation():
    src = ".macro LOAD dst, src\n  dma.load \\dst, \\src, bf16, 1, 1\n.endm\n" \
          "  nop\n  LOAD hbm[0], hbm[0]\n"
    d = errors(src)[0]
    assert d.line == 5 and "(in macro 'LOAD')" in d.message and "must be in sram" in d.message


def test_include_not_found_and_cycle(tmp_path):
    (tmp_path / "a.s").write_text('.include "b.s"\nnop\n')
    (tmp_path / "b.s").write_text('.include "a.s"\n')
    with pytest.raises(AsmError, match=r"include cycle: a.s -> b.s -> a.s"):
        assemble_file(tmp_path / "a.s")
    (tmp_path / "c.s").write_text('nop\n.include "missing.s"\n')
    with pytest.raises(AsmError) as info:
        assemble_file(tmp_path / "c.s")
    d = info.value.diagnostics[0]
    assert d.line == 2 and "cannot include 'missing.s': no such file" in d.message


def test_unreadable_file_is_an_asm_error(tmp_path):
    with pytest.raises(AsmError, match="cannot read"):
        assemble_file(tmp_path / "nope.s")
