"""``build``: a request met before but for its addresses is filled in from the first
one's fields (``_from_template``), and gives what building it afresh gives, errors and
their messages included."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from isa import MemRef, Space, build
from isa.operands import ADDR_BITS, OperandError
from isa.program import _build, _from_template


@settings(max_examples=100, deadline=None)
@given(st.integers(0, (1 << ADDR_BITS) - 1), st.integers(0, (1 << ADDR_BITS) - 1),
       st.sampled_from([None, 0, 3]), st.integers(1, 64))
def test_a_known_request_at_new_addresses_is_built_as_afresh(dst, src, reg, rows):
    first = build("dma.load", MemRef(Space.SRAM, 64), MemRef(Space.HBM, 128, reg), "bf16",
                  rows, 32, stride=48)
    again = _from_template("dma.load", (MemRef(Space.SRAM, dst), MemRef(Space.HBM, src, reg),
                                        "bf16", rows, 32), {"stride": 48})
    fresh = _build("dma.load", (MemRef(Space.SRAM, dst), MemRef(Space.HBM, src, reg),
                                "bf16", rows, 32), {"stride": 48})
    assert first.opcode == again.opcode == fresh.opcode
    assert again.args == fresh.args
    assert again.operand("src") == MemRef(Space.HBM, src, reg)


def test_an_address_out_of_range_at_a_known_request_names_the_operand():
    build("dma.store", MemRef(Space.HBM, 0), MemRef(Space.SRAM, 0), "bf16", 4, 4)
    with pytest.raises(OperandError, match="dma.store operand 'dst': address 0x10000000000"):
        build("dma.store", MemRef(Space.HBM, 1 << ADDR_BITS), MemRef(Space.SRAM, 0), "bf16",
              4, 4)


def test_a_memory_operand_in_the_wrong_space_is_refused_every_time():
    for addr in (0, 64):
        with pytest.raises(OperandError, match="dma.load operand 'src': must be in"):
            build("dma.load", MemRef(Space.SRAM, 0), MemRef(Space.SRAM, addr), "bf16", 4, 4)


def test_an_operand_set_on_a_built_instruction_is_as_if_built_with_it():
    loop = build("loop", 4, 0, "a0", 64)
    assert loop.with_operand("end", 17) == build("loop", 4, 17, "a0", 64)
    with pytest.raises(OperandError, match="loop operand 'end': label target 16777216"):
        loop.with_operand("end", 1 << 24)
    with pytest.raises(OperandError, match="loop has no operand 'stride'"):
        loop.with_operand("stride", 1)
