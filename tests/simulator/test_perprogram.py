"""Per-program tables: found again for the same program object, dropped with it."""

import gc

from isa import Program, build
from simulator.engine.dedupe import _SIGNATURES, signature
from simulator.engine.perprogram import PerProgram


def _program(n: int) -> Program:
    return Program(tuple(build("nop") for _ in range(n)) + (build("halt"),))


def test_a_value_is_kept_per_program_object_and_key_part():
    table = PerProgram()
    a, b = _program(2), _program(2)  # equal programs, two objects
    table.put(a, "streams", True)
    assert table.get(a, True) == "streams"
    assert table.get(a, False) is None  # another key part
    assert table.get(b, True) is None  # equal but not the same program


def test_the_entry_goes_when_the_program_does():
    table = PerProgram()
    p = _program(3)
    table.put(p, [1, 2, 3])
    assert len(table) == 1
    del p
    gc.collect()
    assert len(table) == 0  # nothing kept alive, nothing left behind


def test_signatures_do_not_keep_programs_alive():
    before = len(_SIGNATURES)
    p = _program(5)
    assert signature(p) == signature(p)
    assert len(_SIGNATURES) == before + 1
    del p
    assert len(_SIGNATURES) == before
