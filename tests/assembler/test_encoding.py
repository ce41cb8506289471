"""Hand-checked encodings through the assembler (bit layout: docs/isa.md)."""

from __future__ import annotations

from assembler import assemble
from isa.encoding import encode_words


def lanes(src: str) -> list[int]:
    return [int(x) for x in encode_words(assemble(src).instructions)[0]]


def test_dma_load():
    w = lanes("dma.load sram[0x100], hbm[0x1000 + a2], bf16, 128, 64, stride=4096\n")
    # opcode 0x10; dst.space=1 at bit 8; dst.addr=0x100 at bit 10; src.addr=0x1000 from
    # bit 56 (its low 8 bits are 0); lane 1: src.addr>>8, src.reg=a2+1=3 at bit 96,
    # dtype bf16=4 at 100, rows=128 at 104, cols low byte 64 at 120; lane 2: stride at 136,
    # depth=1 (default) at 168
    assert w == [0x10 | 1 << 8 | 0x100 << 10, 0x4000_8043_0000_0010, 4096 << 8 | 1 << 40, 0]


def test_sem_wait_and_barrier():
    # sem.wait: eng (2 bits: dma=0 mx=1 vec=2 net=3) at bit 8, sem at 10, count at 18
    assert lanes("sem.wait vec, 5, 2\n") == [0x71 | 2 << 8 | 5 << 10 | 2 << 18, 0, 0, 0]
    assert lanes("barrier\n") == [0x72, 0, 0, 0]


def test_loop_with_negative_increment():
    # count at bit 8 (32 bits), end at 40 (24), r0 at 64 (4: a1 -> 2), inc0 at 68 (40 bits)
    w = lanes("loop 3, end, a1, -1\nnop\nend: halt\n")
    inc = (1 << 40) - 1  # -1 in 40-bit two's complement
    assert w[0] == 0x02 | 3 << 8 | 2 << 40
    assert w[1] == 2 | (inc & ((1 << 60) - 1)) << 4
    assert w[2] & 0xF == inc >> 60


def test_float_immediate():
    w = lanes("v.scale sram[0], sram[64], 1, 16, bf16, bf16, 0.125\n")
    assert (w[2] >> (140 - 128)) & 0xFFFF_FFFF == 0x3E00_0000
