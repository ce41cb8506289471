"""Exact shortcut: cores whose programs differ only in addresses run in lockstep.

In performance mode an instruction's timing never depends on an address, and identical
flows get identical shares of a shared bandwidth, so such cores have identical timelines.
One representative per class is simulated with a weight (its class size) in every shared
resource and count. Functional mode and ``dedupe=False`` simulate every core.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from itertools import chain
from typing import NamedTuple

import numpy as np

from isa.program import Instruction, Program
from isa.table import BY_OPCODE
from simulator.engine.perprogram import PerProgram

try:
    from simulator.engine import _fastcore
except ImportError:  # not built: programs are read by sorting their objects' ids
    _fastcore = None

_ADDR_FIELDS: dict[int, tuple[int, ...]] = {}


def address_fields(opcode: int) -> tuple[int, ...]:
    """Positions of an opcode's address fields in ``Instruction.args`` (table order)."""
    idx = _ADDR_FIELDS.get(opcode)
    if idx is None:
        idx = _ADDR_FIELDS[opcode] = tuple(i for i, f in enumerate(BY_OPCODE[opcode].fields)
                                           if f.name.endswith(".addr"))
    return idx


_SIGNATURES = PerProgram()  # program -> _Signed


class _Signed(NamedTuple):
    distinct: list[tuple[tuple, Instruction]]  # distinct signatures, each with its first
    per_pc: np.ndarray  # each pc's index among them
    addresses: np.ndarray  # the address fields' values, in program order
    starts: np.ndarray  # where each pc's address fields begin among them


def signature(program: Program) -> tuple:
    """The program with every address field zeroed, instruction by instruction: equal
    signatures, equal timing (``identity`` digests it; the passes use ``shapes``)."""
    s = _signed(program)
    return tuple(s.distinct[u][0] for u in s.per_pc.tolist())


def addresses(program: Program) -> np.ndarray:
    """What ``signature`` zeroed: every address field's value, instruction by instruction
    (in each, the table's field order), so programs of one signature are compared by it."""
    return _signed(program).addresses


def address_starts(program: Program) -> np.ndarray:
    """Where each pc's address fields begin in ``addresses(program)``."""
    return _signed(program).starts


def shapes(program: Program) -> tuple[list[tuple[tuple, Instruction]], np.ndarray]:
    """The program's distinct address-free signatures, each with its first instruction,
    and each pc's index among them."""
    s = _signed(program)
    return s.distinct, s.per_pc


def _signed(program: Program) -> _Signed:
    seen = _SIGNATURES.get(program)
    if seen is None:
        seen = _signature(program)
        _SIGNATURES.put(program, seen)
    return seen  # type: ignore[return-value]


def _signature(program: Program) -> _Signed:
    """Found per instruction *object*, not per pc: ``build`` gives repeated requests one
    object (an 8k causal prefill's 242 k instructions are 10.7 k objects), so the program
    is read as an array of object ids, each object is signed once (kept on it) and its
    signature looked up by value, and the rest is array work."""
    prog = program.instructions
    if len(prog) < SMALL:
        return _signature_small(prog)
    obj, first_pc = _first_met(prog)  # each pc's object, in first-met order; its first pc
    index: dict[tuple, int] = {}
    distinct: list[tuple[tuple, Instruction]] = []
    shape_of = np.empty(len(first_pc), dtype=np.int64)  # object (first met order) -> shape
    values: list[tuple[int, ...]] = []
    for k, pc in enumerate(first_pc.tolist()):
        ins = prog[pc]
        sig, vals = ins.derived or _signed_one(ins)  # type: ignore[misc]
        u = index.get(sig)
        if u is None:
            u = index[sig] = len(distinct)
            distinct.append((sig, ins))
        shape_of[k] = u
        values.append(vals)
    per_pc = shape_of[obj]
    lens = np.fromiter(map(len, values), dtype=np.int64, count=len(values))
    flat = np.fromiter((v for vals in values for v in vals), dtype=np.int64,
                       count=int(lens.sum()))
    n = lens[obj]  # address fields at each pc
    total = int(n.sum())
    first = np.cumsum(n) - n  # each pc's first address field
    if total:
        gather = np.arange(total) - np.repeat(first - (np.cumsum(lens) - lens)[obj], n)
        addrs = flat[gather]
    else:
        addrs = np.zeros(0, dtype=np.int64)
    return _Signed(distinct, per_pc, addrs, first)


def _first_met(prog: tuple[Instruction, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Each pc's instruction object as its index among the program's distinct objects in
    the order first met, and each object's first pc: one pass in the extension, or, where
    it was not built, a sort of the objects' ids (the same arrays)."""
    if _fastcore is not None:
        which, first = _fastcore.first_met(prog)
        return np.frombuffer(which, dtype=np.int64), np.frombuffer(first, dtype=np.int64)
    ids = np.fromiter(map(id, prog), dtype=np.int64, count=len(prog))
    _, first_pc, which = np.unique(ids, return_index=True, return_inverse=True)
    order = np.argsort(first_pc, kind="stable")  # objects in the order first met
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank[which.reshape(-1)], first_pc[order]


SMALL = 512  # instructions below which a program is signed in a plain loop (no arrays)


def _signature_small(prog: tuple[Instruction, ...]) -> _Signed:
    """``_signature`` of a short program (a decode step's kernels: tens of instructions a
    core), where a dozen array calls cost more than a loop; the same result."""
    index: dict[tuple, int] = {}
    distinct: list[tuple[tuple, Instruction]] = []
    per_pc: list[int] = []
    addrs: list[int] = []
    starts: list[int] = []
    for ins in prog:
        starts.append(len(addrs))
        sig, vals = ins.derived or _signed_one(ins)  # type: ignore[misc]
        u = index.get(sig)
        if u is None:
            u = index[sig] = len(distinct)
            distinct.append((sig, ins))
        per_pc.append(u)
        if vals:
            addrs += vals
    return _Signed(distinct, np.array(per_pc, dtype=np.int64), np.array(addrs, dtype=np.int64),
                   np.array(starts, dtype=np.int64))


def _signed_one(ins: Instruction) -> tuple[tuple, tuple[int, ...]]:
    """One instruction's signature (its address fields zeroed) and those fields' values,
    kept on the instruction (``Instruction.derived``)."""
    op = ins.opcode
    idx = address_fields(op)
    if idx:
        args = list(ins.args)
        for i in idx:
            args[i] = 0
        signed = ((op, tuple(args)), tuple(ins.args[i] for i in idx))
    else:
        signed = ((op, ins.args), ())
    object.__setattr__(ins, "derived", signed)
    return signed


_IDENTITIES = PerProgram()  # program -> digest of its signature


def identity(program: Program) -> bytes:
    """A digest of the program's signature (its distinct signatures written out, then
    which each pc is): equal for programs that differ only in addresses, whatever objects
    they are made of; what programs are grouped by and the kernel-cost key is made of (a
    signature itself is hashed instruction by instruction on every lookup)."""
    seen = _IDENTITIES.get(program)
    if seen is None:
        first, per_pc = shapes(program)
        h = hashlib.blake2b(_written(first), digest_size=20)
        h.update(per_pc.tobytes())
        seen = h.digest()
        _IDENTITIES.put(program, seen)
    return seen  # type: ignore[return-value]


def _written(first: list[tuple[tuple, Instruction]]) -> bytes:
    """The distinct signatures as bytes, unambiguously: their number, their opcodes, their
    field counts, then every field (int64 arrays; a loop's end or a tile's row count makes
    thousands of distinct signatures in a long program, where ``repr`` was 5% of a file's
    validation)."""
    args = [sig[1] for sig, _ in first]
    lens = np.fromiter(map(len, args), dtype=np.int64, count=len(args))
    try:
        fields = np.fromiter(chain.from_iterable(args), dtype=np.int64, count=int(lens.sum()))
    except OverflowError:  # a field beyond 64 bits (none in today's table)
        return repr([sig for sig, _ in first]).encode()
    ops = np.fromiter((sig[0] for sig, _ in first), dtype=np.int64, count=len(first))
    return np.int64(len(first)).tobytes() + ops.tobytes() + lens.tobytes() + fields.tobytes()


def group_identical(programs: Mapping[tuple[int, int], Program]
                    ) -> tuple[dict[tuple[int, int], Program], dict[tuple[int, int], int]]:
    """Representatives per chip and signature, and the weight of each."""
    seen: dict[tuple, tuple[int, int]] = {}
    reps: dict[tuple[int, int], Program] = {}
    weights: dict[tuple[int, int], int] = {}
    for key in sorted(programs):
        prog = programs[key]
        sig = (key[0], identity(prog))
        rep = seen.get(sig)
        if rep is None:
            seen[sig] = key
            reps[key] = prog
            weights[key] = 1
        else:
            weights[rep] += 1
    return reps, weights
