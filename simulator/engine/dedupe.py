"""Exact shortcut: cores whose programs differ only in addresses run in lockstep.

In performance mode an instruction's timing never depends on an address, and identical
flows get identical shares of a shared bandwidth, so such cores have identical timelines.
One representative per class is simulated with a weight (its class size) in every shared
resource and count. Functional mode and ``dedupe=False`` simulate every core.
"""

from __future__ import annotations

from collections.abc import Mapping

from isa.program import Program
from simulator.engine.perprogram import PerProgram

_ADDR_FIELDS: dict[int, tuple[int, ...]] = {}


def address_fields(opcode: int, program_spec) -> tuple[int, ...]:  # noqa: ANN001
    idx = _ADDR_FIELDS.get(opcode)
    if idx is None:
        idx = tuple(i for i, f in enumerate(program_spec.fields) if f.name.endswith(".addr"))
        _ADDR_FIELDS[opcode] = idx
    return idx


_SIGNATURES = PerProgram()  # program -> (signature, its address fields' values in order)


def signature(program: Program) -> tuple:
    """The program with every address field zeroed: equal signatures, equal timing.
    Computed once per program object (the kernel-cost key and the grouping both ask)."""
    return _signed(program)[0]


def addresses(program: Program) -> list[int]:
    """What ``signature`` zeroed: every address field's value, instruction by instruction
    (in each, the table's field order), so programs of one signature are compared by it."""
    return _signed(program)[1]


def _signed(program: Program) -> tuple[tuple, list[int]]:
    seen = _SIGNATURES.get(program)
    if seen is None:
        seen = _signature(program)
        _SIGNATURES.put(program, seen)
    return seen  # type: ignore[return-value]


def _signature(program: Program) -> tuple[tuple, list[int]]:
    out = []
    addrs: list[int] = []
    known = _ADDR_FIELDS
    for ins in program.instructions:  # a pass over every instruction: kept lean
        op = ins.opcode
        idx = known.get(op)
        if idx is None:
            idx = address_fields(op, ins.spec)
        if idx:
            args = list(ins.args)
            for i in idx:
                addrs.append(args[i])
                args[i] = 0
            out.append((op, tuple(args)))
        else:
            out.append((op, ins.args))
    return tuple(out), addrs


def group_identical(programs: Mapping[tuple[int, int], Program]
                    ) -> tuple[dict[tuple[int, int], Program], dict[tuple[int, int], int]]:
    """Representatives per chip and signature, and the weight of each."""
    seen: dict[tuple, tuple[int, int]] = {}
    reps: dict[tuple[int, int], Program] = {}
    weights: dict[tuple[int, int], int] = {}
    for key in sorted(programs):
        prog = programs[key]
        sig = (key[0], signature(prog))
        rep = seen.get(sig)
        if rep is None:
            seen[sig] = key
            reps[key] = prog
            weights[key] = 1
        else:
            weights[rep] += 1
    return reps, weights
