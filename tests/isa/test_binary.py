"""The binary container: exact round trip, and a clear error for anything damaged or foreign."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from isa import DataSegment, DecodeError, DType, MemRef, Program, Space, build
from isa.binary import read_binary, write_binary


def sample() -> Program:
    ins = (
        build("loop", 4, 3, "a0", 256),
        build("dma.load", MemRef(Space.SRAM, 0), MemRef(Space.HBM, 0x40, 0), DType.BF16, 8, 16),
        build("sem.signal", "mx", 0),
        build("halt"),
    )
    return Program(ins, (DataSegment(Space.HBM, 0x40, b"\x01\x02\x03"),),
                   {"top": 0, "done": 3}, {"TILE": 16})


def test_round_trip_is_exact():
    prog = sample()
    back = read_binary(write_binary(prog))
    assert back == prog
    assert write_binary(back) == write_binary(prog)


def test_every_truncation_is_an_error():
    data = write_binary(sample())
    for n in range(len(data)):
        with pytest.raises(DecodeError):
            read_binary(data[:n], "prog.bin")


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_single_byte_change_is_caught(data):
    blob = bytearray(write_binary(sample()))
    pos = data.draw(st.integers(0, len(blob) - 1))
    blob[pos] ^= data.draw(st.integers(1, 255))
    with pytest.raises(DecodeError):
        read_binary(bytes(blob), "prog.bin")


def test_foreign_file_names_the_file_and_the_magic():
    with pytest.raises(DecodeError, match=r"^notes.txt: not a Tessera binary"):
        read_binary(b"hello, this is a text file\n", "notes.txt")


def test_loop_target_outside_program_is_rejected():
    prog = Program((build("loop", 2, 9),))
    with pytest.raises(DecodeError, match="target 9 outside 1..1"):
        read_binary(write_binary(prog))
