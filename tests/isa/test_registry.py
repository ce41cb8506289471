"""Every instruction of the table has a cost, functional semantics and a footprint.

Adding an instruction is one table row + its semantics (+ a cost function for a new timing
class); this walk fails until all of them exist, instead of the row silently costing
nothing or being skipped in functional mode.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from isa import DType, MemRef, Space, build
from isa.footprint import FOOTPRINTS, footprint
from isa.table import TABLE, TIMING, VECTOR_CLASSES
from simulator.engine.timing import COSTS
from simulator.functional.semantics import BY_CORE, BY_NETWORK, SEMANTICS

ROOT = Path(__file__).parents[2]
BF = DType.BF16


def sram(addr: int) -> MemRef:
    return MemRef(Space.SRAM, addr)


def acc(addr: int) -> MemRef:
    return MemRef(Space.ACC, addr)


@pytest.mark.parametrize("spec", TABLE, ids=lambda s: s.mnemonic)
def test_every_row_has_cost_semantics_and_footprint(spec):
    assert spec.timing in COSTS, f"{spec.mnemonic}: no cost function for {spec.timing!r}"
    handled = [spec.mnemonic in SEMANTICS, spec.mnemonic in BY_CORE,
               spec.mnemonic in BY_NETWORK]
    assert sum(handled) == 1, f"{spec.mnemonic}: functional semantics {handled}"
    assert spec.footprint in FOOTPRINTS
    mems = [op.name for op in spec.operands if type(op.kind).__name__ == "Mem"]
    if spec.footprint == "none":
        assert spec.timing in ("free", "network") and not mems
    else:  # the footprint names every memory operand that moves data
        assert mems


def test_every_timing_class_is_priced_and_every_vector_class_configurable():
    assert set(COSTS) == set(TIMING)
    from hardware.chip import VectorConfig

    assert set(VectorConfig(lanes=1).op_cycles) == set(VECTOR_CLASSES)


def test_vector_rows_price_by_their_class():
    from simulator.engine.timing import static_cost
    from tests.simulator.conftest import make_chip

    chip = make_chip()
    fast = static_cost(build("v.add", sram(0), sram(0), sram(0), 4, 64, BF, BF, BF), chip)
    slow = static_cost(build("v.exp", sram(0), sram(0), 4, 64, BF, BF), chip)
    assert slow.ns > fast.ns > 0  # transcendental (4 cycles/element) over simple (1)


def test_mm_footprint_and_flags_are_read_by_name():
    sparse = build("mm", acc(0), sram(0), sram(4096), 16, 32, 16, BF, BF, ("sp24", "accum"))
    dense = build("mm", acc(0), sram(0), sram(4096), 16, 32, 16, BF, BF)
    assert sparse.flag("sp24") and sparse.flag("accum") and not sparse.flag("ta")
    assert dict(footprint(sparse))["w"] == 2 * 16 * 16 + 32 * 16 // 8
    assert dict(footprint(dense))["w"] == 2 * 32 * 16
    with pytest.raises(KeyError, match="no flag"):
        dense.flag("bogus")


def test_no_flag_is_read_by_its_bit_number():
    code = "\n".join(p.read_text() for pkg in ("simulator", "mapper", "experiments")
                     for p in (ROOT / pkg).rglob("*.py"))
    assert not re.search(r"flags\"?\]?\s*(&|>>)", code)
