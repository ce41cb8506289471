"""Operand kinds: how each operand of the table is checked, encoded into fields and printed.

An operand kind turns a value a user or the mapper supplies (a ``MemRef``, an int, a name, a
float) into one or more integer *fields* of the instruction word, and back into canonical
text. The assembler, the encoder, the disassembler and the docs all go through these.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from enum import Enum, IntEnum

from isa.dtypes import DType

ADDR_BITS = 40
NUM_AREGS = 8


class Space(IntEnum):
    """Memory space named explicitly in every memory operand."""

    HBM = 0
    SRAM = 1
    ACC = 2

    __hash__ = int.__hash__  # as DType's: an int's hash, not Enum's Python call

    @property
    def asm_name(self) -> str:
        return self.name.lower()


class Engine(Enum):
    """The engine of a core that executes an instruction, each in its own program order."""

    DMA = "dma"
    MATRIX = "mx"
    VECTOR = "vec"
    NETWORK = "net"
    CONTROL = "ctl"


class OperandError(ValueError):
    """A value does not fit its operand; the message is written for the user."""


@dataclass(frozen=True, slots=True)
class MemRef:
    """A memory operand: ``space[addr]`` or ``space[addr + aN]`` (address register N)."""

    space: Space
    addr: int
    reg: int | None = None
    # the hash, kept: memory operands key the instruction builder's cache, hashed millions
    # of times while a kernel is lowered (from ints only, so equal across processes)
    _hash: int = field(init=False, repr=False, compare=False, default=0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash((int(self.space), self.addr,
                                                -1 if self.reg is None else self.reg)))

    def __hash__(self) -> int:
        return self._hash

    def __str__(self) -> str:
        sp = self.space.asm_name
        if self.reg is None:
            return f"{sp}[{self.addr:#x}]"
        return f"{sp}[{self.addr:#x} + a{self.reg}]" if self.addr else f"{sp}[a{self.reg}]"


@dataclass(frozen=True, slots=True)
class Field:
    """One bit field of an instruction word."""

    name: str
    bits: int
    signed: bool = False


class Kind:
    """Base of operand kinds. ``fields`` lays out bits; ``encode``/``decode``/``fmt`` convert."""

    doc = ""

    def fields(self, name: str) -> tuple[Field, ...]:
        return (Field(name, self.bits),)  # type: ignore[attr-defined]

    def encode(self, value: object) -> tuple[int, ...]:
        raise NotImplementedError

    def decode(self, raw: tuple[int, ...]) -> object:
        return raw[0]

    def fmt(self, raw: tuple[int, ...]) -> str:
        return str(raw[0])

    def check_raw(self, raw: tuple[int, ...]) -> str | None:
        """Why decoded bits are not a valid operand (None when they are)."""
        try:
            self.encode(self.decode(raw))
        except OperandError as exc:
            return str(exc)
        return None


@dataclass(frozen=True)
class UInt(Kind):
    bits: int
    lo: int = 0
    hi: int | None = None

    @property
    def top(self) -> int:
        return (1 << self.bits) - 1 if self.hi is None else self.hi

    @property
    def doc(self) -> str:  # type: ignore[override]
        return f"unsigned integer {self.lo}..{self.top}"

    def encode(self, value: object) -> tuple[int, ...]:
        if isinstance(value, bool) or not isinstance(value, int):
            raise OperandError(f"expected an integer, got {_show(value)}")
        if not self.lo <= value <= self.top:
            raise OperandError(f"value {value} out of range {self.lo}..{self.top}")
        return (value,)


@dataclass(frozen=True)
class SInt(Kind):
    bits: int

    @property
    def doc(self) -> str:  # type: ignore[override]
        return f"signed integer, {self.bits}-bit two's complement"

    def fields(self, name: str) -> tuple[Field, ...]:
        return (Field(name, self.bits, signed=True),)

    def encode(self, value: object) -> tuple[int, ...]:
        if isinstance(value, bool) or not isinstance(value, int):
            raise OperandError(f"expected an integer, got {_show(value)}")
        lim = 1 << (self.bits - 1)
        if not -lim <= value < lim:
            raise OperandError(f"value {value} out of range {-lim}..{lim - 1}")
        return (value,)


@dataclass(frozen=True)
class Label(Kind):
    """Absolute instruction index of a jump target; written as a label in text."""

    bits: int = 24
    doc: str = "label (instruction index)"

    def encode(self, value: object) -> tuple[int, ...]:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise OperandError(f"expected a label, got {_show(value)}")
        if value >= 1 << self.bits:
            raise OperandError(f"label target {value} beyond {(1 << self.bits) - 1}")
        return (value,)

    def fmt(self, raw: tuple[int, ...]) -> str:
        return f"L{raw[0]}"


@dataclass(frozen=True)
class Choice(Kind):
    """One name out of a fixed list, stored as its index."""

    names: tuple[str, ...]

    @property
    def bits(self) -> int:
        return max(1, (len(self.names) - 1).bit_length())

    @property
    def doc(self) -> str:  # type: ignore[override]
        return "one of " + " | ".join(self.names)

    def encode(self, value: object) -> tuple[int, ...]:
        if isinstance(value, Enum):
            value = value.value
        if isinstance(value, str) and value in self.names:
            return (self.names.index(value),)
        raise OperandError(f"expected one of {', '.join(self.names)}; got {_show(value)}")

    def decode(self, raw: tuple[int, ...]) -> object:
        return self.names[raw[0]] if raw[0] < len(self.names) else raw[0]

    def fmt(self, raw: tuple[int, ...]) -> str:
        return self.names[raw[0]]


@dataclass(frozen=True)
class DTypeKind(Kind):
    bits: int = 4
    doc: str = "data type: " + " | ".join(d.asm_name for d in DType)

    def encode(self, value: object) -> tuple[int, ...]:
        if isinstance(value, DType):
            return (int(value),)
        if isinstance(value, str):
            try:
                return (int(DType.parse(value)),)
            except ValueError as exc:
                raise OperandError(str(exc)) from None
        raise OperandError(f"expected a data type, got {_show(value)}")

    def decode(self, raw: tuple[int, ...]) -> object:
        return DType(raw[0]) if raw[0] < len(DType) else raw[0]

    def fmt(self, raw: tuple[int, ...]) -> str:
        return DType(raw[0]).asm_name


@dataclass(frozen=True)
class Flags(Kind):
    """A set of named one-bit flags, written ``a|b`` (or ``0`` for none)."""

    names: tuple[str, ...]

    @property
    def bits(self) -> int:
        return len(self.names)

    @property
    def doc(self) -> str:  # type: ignore[override]
        return "flags joined by '|': " + ", ".join(self.names) + " (or 0)"

    def encode(self, value: object) -> tuple[int, ...]:
        if value == 0 or value == ():
            return (0,)
        items = value.split("|") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple, set, frozenset)):
            raise OperandError(f"expected flags ({'|'.join(self.names)}), got {_show(value)}")
        mask = 0
        for item in items:
            if item not in self.names:
                raise OperandError(f"unknown flag '{item}' (expected {', '.join(self.names)})")
            mask |= 1 << self.names.index(item)
        return (mask,)

    def decode(self, raw: tuple[int, ...]) -> object:
        return frozenset(n for i, n in enumerate(self.names) if raw[0] >> i & 1)

    def fmt(self, raw: tuple[int, ...]) -> str:
        on = [n for i, n in enumerate(self.names) if raw[0] >> i & 1]
        return "|".join(on) if on else "0"


@dataclass(frozen=True)
class F32(Kind):
    """A finite IEEE float32 immediate, stored as its bit pattern."""

    bits: int = 32
    doc: str = "float32 immediate"

    def encode(self, value: object) -> tuple[int, ...]:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise OperandError(f"expected a number, got {_show(value)}")
        try:
            x = float(value)
        except OverflowError:
            x = math.inf
        if not math.isfinite(x) or abs(x) > 3.4028234663852886e38:
            raise OperandError(f"value {value} is not a finite float32")
        return (struct.unpack("<I", struct.pack("<f", x))[0],)

    def decode(self, raw: tuple[int, ...]) -> object:
        return struct.unpack("<f", struct.pack("<I", raw[0]))[0]

    def fmt(self, raw: tuple[int, ...]) -> str:
        return repr(self.decode(raw))


@dataclass(frozen=True)
class AReg(Kind):
    """An optional address register a0..a7; 0 in the field means none."""

    bits: int = 4
    doc: str = "address register a0..a7 or none"

    def encode(self, value: object) -> tuple[int, ...]:
        if value is None or value == "none":
            return (0,)
        if isinstance(value, str) and len(value) == 2 and value[0] == "a" and value[1].isdigit():
            value = int(value[1])
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < NUM_AREGS:
            return (value + 1,)
        raise OperandError(f"expected an address register a0..a{NUM_AREGS - 1}, got {_show(value)}")

    def decode(self, raw: tuple[int, ...]) -> object:
        return None if raw[0] == 0 else raw[0] - 1

    def fmt(self, raw: tuple[int, ...]) -> str:
        return "none" if raw[0] == 0 else f"a{raw[0] - 1}"


@dataclass(frozen=True)
class Mem(Kind):
    """A memory operand in one of ``spaces``: fields space (2 bits), addr (40), reg (4)."""

    spaces: tuple[Space, ...]

    @property
    def doc(self) -> str:  # type: ignore[override]
        names = " or ".join(s.asm_name for s in self.spaces)
        return f"memory operand in {names}: space[addr] or space[addr + aN]"

    def fields(self, name: str) -> tuple[Field, ...]:
        return (Field(f"{name}.space", 2), Field(f"{name}.addr", ADDR_BITS),
                Field(f"{name}.reg", 4))

    def encode(self, value: object) -> tuple[int, ...]:
        if not isinstance(value, MemRef):
            raise OperandError(f"expected a memory operand like sram[0x100], got {_show(value)}")
        if value.space not in self.spaces:
            allowed = " or ".join(s.asm_name for s in self.spaces)
            raise OperandError(f"must be in {allowed}, not {value.space.asm_name}")
        if not 0 <= value.addr < 1 << ADDR_BITS:
            raise OperandError(f"address {value.addr:#x} out of range 0..{(1 << ADDR_BITS) - 1:#x}")
        (reg,) = AReg().encode(value.reg)
        return (int(value.space), value.addr, reg)

    def decode(self, raw: tuple[int, ...]) -> object:
        space = Space(raw[0]) if raw[0] < len(Space) else raw[0]
        return MemRef(space, raw[1], None if raw[2] == 0 else raw[2] - 1)  # type: ignore[arg-type]

    def check_raw(self, raw: tuple[int, ...]) -> str | None:
        if raw[0] >= len(Space):
            return f"space code {raw[0]} is not a memory space"
        if raw[2] > NUM_AREGS:
            return f"address register code {raw[2]} out of range"
        return super().check_raw(raw)

    def fmt(self, raw: tuple[int, ...]) -> str:
        return str(self.decode(raw))


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
