"""The table is the single definition: its invariants, and the docs generated from it."""

from __future__ import annotations

from pathlib import Path

from isa import TABLE, Engine
from isa.docs import isa_markdown
from isa.table import OPCODE_BITS, WORD_BITS

ROOT = Path(__file__).resolve().parents[2]


def test_docs_isa_md_is_current():
    doc = (ROOT / "docs" / "isa.md").read_text()
    assert doc == isa_markdown(), "docs/isa.md is stale: run `tessera isa --markdown > docs/isa.md`"


def test_every_instruction_fits_the_word_and_has_semantics():
    for spec in TABLE:
        assert OPCODE_BITS + sum(f.bits for f in spec.fields) <= WORD_BITS
        assert spec.semantics and spec.mnemonic.islower()


def test_issue_coverage_of_engines():
    engines = {s.engine for s in TABLE}
    assert {Engine.DMA, Engine.MATRIX, Engine.VECTOR, Engine.NETWORK, Engine.CONTROL} <= engines
    names = {s.mnemonic for s in TABLE}
    for required in ("dma.load", "dma.store", "dma.copy", "mm", "v.softmax", "v.layernorm",
                     "v.rmsnorm", "v.quant", "v.dequant", "net.allreduce", "net.alltoall",
                     "sem.signal", "sem.wait", "barrier", "loop", "nop", "halt"):
        assert required in names
