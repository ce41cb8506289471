"""Instruction words: hand-checked layouts and a decoder that rejects anything invalid."""

from __future__ import annotations

import numpy as np
import pytest

from isa import DecodeError, DType, MemRef, Space, build, decode, encode
from isa.encoding import encode_words


def lanes(ins) -> list[int]:
    return [int(x) for x in encode_words([ins])[0]]


def test_dma_load_word_by_hand():
    ins = build("dma.load", MemRef(Space.SRAM, 0x100), MemRef(Space.HBM, 0x1000, 2), DType.BF16,
                128, 64, stride=4096)
    # bit 0 opcode 0x10; bit 8 dst.space=1; bit 10 dst.addr=0x100; bit 54 src.space=0;
    # bit 56 src.addr=0x1000 (low 8 bits in lane 0, the rest from lane 1 bit 0)
    lane0 = 0x10 | 1 << 8 | 0x100 << 10
    # lane 1: src.addr>>8 at bit 0; src.reg=2+1 at bit 96-64; dtype bf16=4 at 100-64;
    # rows=128 at 104-64; low 8 bits of cols=64 at 120-64
    lane1 = 0x10 | 3 << 32 | 4 << 36 | 128 << 40 | 64 << 56
    # lane 2: cols>>8=0; stride=4096 at 136-128; depth=1 at 168-128
    lane2 = 4096 << 8 | 1 << 40
    assert lanes(ins) == [lane0, lane1, lane2, 0]
    assert lane1 == 0x4000_8043_0000_0010


def test_mm_word_by_hand():
    ins = build("mm", MemRef(Space.ACC, 0x40), MemRef(Space.SRAM, 0), MemRef(Space.SRAM, 0x8000),
                16, 32, 8, "int8", "int4", "accum|sp24")
    # fields from bit 8: dst(2+40+4) a(46) w(46) -> m at 146, k 162, n 178, adt 194, wdt 198,
    # flags 202 (accum bit 0, ta 1, tw 2, sp24 3)
    lane0 = 0x20 | 2 << 8 | 0x40 << 10 | 1 << 54
    w_space_bit = 100  # 8 + 46 + 46
    lane1 = 1 << (w_space_bit - 64) | 0x8000 << (w_space_bit + 2 - 64)
    lane2 = 16 << (146 - 128) | 32 << (162 - 128) | 8 << (178 - 128)
    lane3 = 1 << (194 - 192) | 0 << (198 - 192) | 0b1001 << (202 - 192)
    assert lanes(ins) == [lane0, lane1, lane2, lane3]


def test_loop_signed_increment_round_trips():
    ins = build("loop", 8, 5, "a1", -4096, "a0", (1 << 39) - 1)
    assert lanes(ins)[0] & 0xFF == 0x02
    (back,) = decode(encode([ins]))
    assert back == ins and back.operand("inc0") == -4096 and back.operand("r0") == 1


def test_float_immediate_is_float32_bits():
    ins = build("v.scale", MemRef(Space.SRAM, 0), MemRef(Space.SRAM, 64), 1, 16, "bf16", "bf16",
                0.125)
    # s is the last field: 8 + 46 + 46 + 16 + 16 + 4 + 4 = 140
    assert (lanes(ins)[2] >> (140 - 128)) & 0xFFFF_FFFF == 0x3E00_0000
    assert decode(encode([ins]))[0].operand("s") == 0.125


def test_nop_is_a_zero_word():
    assert encode([build("nop")]) == bytes(32)


@pytest.mark.parametrize("mutate, message", [
    (lambda w: w.__setitem__((0, 0), 0xEE), "unknown opcode 0xee"),
    (lambda w: w.__setitem__((0, 3), 1 << 63), "reserved bits"),
    (lambda w: w.__setitem__((0, 0), int(w[0, 0]) | 3 << 8), "operand 'dst': space code 3"),
])
def test_decoder_rejects_invalid_words(mutate, message):
    ins = build("dma.copy", MemRef(Space.SRAM, 0), MemRef(Space.SRAM, 64), DType.BF16, 1, 1)
    words = encode_words([build("nop"), ins]).copy()
    row = words[1:2]
    mutate(row)
    words[1] = row[0]
    with pytest.raises(DecodeError, match=message) as info:
        decode(words.astype("<u8").tobytes())
    assert "instruction 1 (byte offset 0x20)" in str(info.value)


def test_decoder_rejects_wrong_space_for_operand():
    words = encode_words([build("mm", MemRef(Space.ACC, 0), MemRef(Space.SRAM, 0),
                                MemRef(Space.SRAM, 0), 1, 1, 1, "bf16", "bf16")]).copy()
    words[0, 0] = int(words[0, 0]) & ~np.uint64(3 << 54)  # operand a: sram -> hbm
    with pytest.raises(DecodeError, match="operand 'a'"):
        decode(words.astype("<u8").tobytes())


def test_decoder_rejects_zero_rows_and_partial_words():
    ins = build("dma.copy", MemRef(Space.SRAM, 0), MemRef(Space.SRAM, 0), DType.BF16, 1, 1)
    words = encode_words([ins]).copy()
    words[0, 1] &= ~np.uint64(0xFFFF << (100 - 64 + 4))  # rows := 0
    with pytest.raises(DecodeError, match="'rows'"):
        decode(words.astype("<u8").tobytes())
    with pytest.raises(DecodeError, match="whole number"):
        decode(bytes(33))
