"""``Instruction`` and ``Program``: the values the mapper writes and the simulator runs.

An instruction is its opcode and a flat tuple of integer field values in the table's field
order (a memory operand is three fields: space, addr, reg). Flat ints keep encoding,
decoding and dispatch fast; ``build`` and ``operand`` give named, checked access.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from isa.operands import ADDR_BITS, Engine, MemRef, OperandError, Space
from isa.table import BY_MNEMONIC, BY_OPCODE, ENGINE_NAMES, Operand, OpSpec

_ENGINE_BY_NAME = {e.value: e for e in Engine}


@dataclass(frozen=True, slots=True)
class Instruction:
    opcode: int
    args: tuple[int, ...]
    # what a pass over programs derives from this instruction alone, kept on it (the
    # simulator's address-free signature): one instruction object stands for every
    # occurrence of the same request (``build``), a few thousand for a kernel's hundreds of
    # thousands of instructions. Not compared, hashed or pickled.
    derived: object = field(default=None, init=False, compare=False, repr=False)

    def __getstate__(self) -> tuple:
        return self.opcode, self.args

    def __setstate__(self, state: tuple) -> None:
        object.__setattr__(self, "opcode", state[0])
        object.__setattr__(self, "args", state[1])
        object.__setattr__(self, "derived", None)

    @property
    def spec(self) -> OpSpec:
        return BY_OPCODE[self.opcode]

    @property
    def mnemonic(self) -> str:
        return BY_OPCODE[self.opcode].mnemonic

    @property
    def engine(self) -> Engine:
        """The engine whose queue executes this instruction (sync ops name it in ``eng``)."""
        spec = BY_OPCODE[self.opcode]
        if spec.engine is not None:
            return spec.engine
        return _ENGINE_BY_NAME[ENGINE_NAMES[self.args[0]]]

    def operand(self, name: str) -> object:
        """The decoded value of operand ``name`` (a MemRef, DType, int, float, name...)."""
        spec = BY_OPCODE[self.opcode]
        for op in spec.operands:
            if op.name == name:
                return op.kind.decode(self.args[spec.slices[name]])
        raise KeyError(f"{spec.mnemonic} has no operand {name!r}")

    def with_operand(self, name: str, value: object) -> Instruction:
        """This instruction with operand ``name`` set to ``value`` (encoded and checked as
        ``build`` does): a loop at a new end, without building it afresh."""
        spec = BY_OPCODE[self.opcode]
        for op in spec.operands:
            if op.name == name:
                at = spec.slices[name]
                return Instruction(self.opcode, self.args[:at.start]
                                   + _encoded(spec.mnemonic, op, value) + self.args[at.stop:])
        raise OperandError(f"{spec.mnemonic} has no operand '{name}'")

    def __getitem__(self, field_name: str) -> int:
        return self.args[BY_OPCODE[self.opcode].index(field_name)]

    def flag(self, name: str) -> bool:
        """Whether flag ``name`` (as the table's ``flags`` operand names it) is set."""
        return bool(self["flags"] >> BY_OPCODE[self.opcode].flag_bit(name) & 1)


def build(mnemonic: str, *positional: object, **named: object) -> Instruction:
    """Make a checked instruction from operand values, filling optional ones with defaults.

    Raises ``OperandError`` naming the operand when a value does not fit. Instructions are
    immutable, so identical requests (a kernel's inner loop emitted once per tile) share one
    value from a cache.
    """
    key = (mnemonic, positional, tuple(named.items())) if named else (mnemonic, positional)
    try:
        hit = _BUILT.get(key)
    except TypeError:  # an unhashable value (a list of flags): build it directly
        return _build(mnemonic, positional, named)
    if hit is None:
        hit = _from_template(mnemonic, positional, named)
        if len(_BUILT) >= BUILT_KEPT:
            _BUILT.clear()
        _BUILT[key] = hit
    return hit


# request -> instruction (a dict, not an lru_cache: a hit is most calls while a kernel is
# lowered, and the plain lookup is the cheapest; cleared when full). Keyword operands in
# the order given: two orders of one request are two entries of the same instruction.
BUILT_KEPT = 1 << 17
_BUILT: dict[tuple, Instruction] = {}


def _from_template(mnemonic: str, positional: tuple, named: dict) -> Instruction:
    """``_build`` of a request met before but for its memory operands' addresses (a
    kernel's tiles: the same load at the next tile's address): the encoded fields of the
    first such request, each address put in its field after a range check. An error
    (a bad operand, an address out of range) comes from ``_build``, with its message."""
    addrs: list[int] = []
    shape = [_slot_of(v, addrs) for v in positional]
    if named:
        shape += [(k, _slot_of(v, addrs)) for k, v in named.items()]
    tkey = (mnemonic, *shape)
    got = _TEMPLATES.get(tkey)
    if got is None:
        ins = _build(mnemonic, positional, named)
        spec = BY_OPCODE[ins.opcode]
        mems = [op.name for op, v in zip(spec.operands, positional) if v.__class__ is MemRef]
        mems += [k for k, v in named.items() if v.__class__ is MemRef]
        if len(_TEMPLATES) >= BUILT_KEPT:
            _TEMPLATES.clear()
        _TEMPLATES[tkey] = (ins.opcode, ins.args,
                            tuple(spec.slices[n].start + 1 for n in mems))  # each .addr
        return ins
    opcode, args, where = got
    if not where:
        return Instruction(opcode, args)
    out = list(args)
    for at, addr in zip(where, addrs):
        if not 0 <= addr < _ADDR_END:
            return _build(mnemonic, positional, named)  # raises, naming the operand
        out[at] = addr
    return Instruction(opcode, tuple(out))


def _slot_of(value: object, addrs: list[int]) -> object:
    """A request's value as a template sees it: a memory operand without its address
    (appended to ``addrs``), anything else as it is."""
    if value.__class__ is MemRef:
        addrs.append(value.addr)  # type: ignore[attr-defined]
        return (_MEM, value.space, value.reg)  # type: ignore[attr-defined]
    return value


# request with its memory operands' addresses left out -> (opcode, fields, where each
# address goes): the misses of ``_BUILT`` are mostly a known request at a new address
_TEMPLATES: dict[tuple, tuple[int, tuple[int, ...], tuple[int, ...]]] = {}
_MEM = object()  # marks a memory operand's place in a template's key
_ADDR_END = 1 << ADDR_BITS


def _build(mnemonic: str, positional: tuple, named: dict) -> Instruction:
    spec = BY_MNEMONIC.get(mnemonic)
    if spec is None:
        raise OperandError(f"unknown mnemonic '{mnemonic}'")
    if len(positional) > len(spec.operands):
        raise OperandError(f"{mnemonic} takes at most {len(spec.operands)} operands")
    values = dict(zip((o.name for o in spec.operands), positional))
    for key, val in named.items():
        if key in values:
            raise OperandError(f"{mnemonic}: operand '{key}' given twice")
        values[key] = val
    args: list[int] = []
    for op in spec.operands:
        val = values.pop(op.name, op.default)
        if val is None and not op.optional:
            raise OperandError(f"{mnemonic}: missing operand '{op.name}'")
        args.extend(_encoded(mnemonic, op, val))
    if values:
        raise OperandError(f"{mnemonic} has no operand '{next(iter(values))}'")
    return Instruction(spec.opcode, tuple(args))


def _encoded(mnemonic: str, op: Operand, value: object) -> tuple[int, ...]:
    """One operand's fields, or an error naming the instruction and the operand."""
    try:
        return op.kind.encode(value)
    except OperandError as exc:
        raise OperandError(f"{mnemonic} operand '{op.name}': {exc}") from None


@dataclass(frozen=True)
class DataSegment:
    """Bytes placed at ``addr`` of ``space`` before the program starts (weights, constants)."""

    space: Space
    addr: int
    data: bytes


@dataclass(frozen=True)
class Program:
    """A core's program: instructions, initial data and symbols (labels and constants)."""

    instructions: tuple[Instruction, ...]
    data: tuple[DataSegment, ...] = ()
    labels: Mapping[str, int] = field(default_factory=dict)
    constants: Mapping[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.instructions)


__all__ = ["DataSegment", "Instruction", "MemRef", "Program", "build"]
