"""Random and mutated source text only ever raises the assembler's own error."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from assembler import AsmError, assemble

EXAMPLES = [p.read_text() for p in sorted((Path(__file__).parents[2] / "examples").glob("*.s"))]
TOKENS = ["sram[", "]", "hbm[", "acc[0]", ",", "+ a3", "0x", "1e9", "-", "(", ")", ".equ",
          ".macro", ".endm", ".include", '"', ":", "|", "=", "loop", "mm", "\n", "<<", "/ 0",
          "a9", "KiB", ".data hbm,", ".bf16", "nan", "inf", "\\x", "\t", "\r\n"]


def check(text: str) -> None:
    try:
        assemble(text, "fuzz.s")
    except AsmError as exc:
        for d in exc.diagnostics:
            assert d.file and d.message


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_examples(data):
    text = data.draw(st.sampled_from(EXAMPLES))
    for _ in range(data.draw(st.integers(1, 6))):
        pos = data.draw(st.integers(0, len(text)))
        op = data.draw(st.sampled_from(["delete", "insert", "token", "swap"]))
        if op == "delete":
            text = text[:pos] + text[pos + data.draw(st.integers(1, 12)):]
        elif op == "insert":
            text = text[:pos] + data.draw(st.text(max_size=6)) + text[pos:]
        elif op == "token":
            text = text[:pos] + data.draw(st.sampled_from(TOKENS)) + text[pos:]
        else:
            other = data.draw(st.integers(0, len(text)))
            a, b = sorted((pos, other))
            text = text[:a] + text[b:] + text[a:b]
    check(text)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(TOKENS + ["nop", "x", "1", " "]), max_size=30))
def test_random_token_soup(tokens):
    check(" ".join(tokens))


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200))
def test_random_text(text):
    check(text)
