"""Element data types of the ISA: one enum, with the facts every tool needs about each."""

from __future__ import annotations

from enum import IntEnum


class DType(IntEnum):
    """Element data type; the value is its 4-bit code in an instruction word."""

    INT4 = 0
    INT8 = 1
    FP8E4M3 = 2
    FP8E5M2 = 3
    BF16 = 4
    FP16 = 5
    FP32 = 6
    INT32 = 7
    FP4E2M1 = 8  # OCP MX fp4: 1 sign, 2 exponent, 1 mantissa bits; max 6; block-scaled

    # an int's own hash (Enum's is a Python call): dtypes key the instruction builder's
    # cache and every per-dtype table, millions of times while a kernel is lowered
    __hash__ = int.__hash__

    @property
    def bits(self) -> int:
        return _BITS_OF[self]

    @property
    def is_float(self) -> bool:
        return self not in (DType.INT4, DType.INT8, DType.INT32)

    @property
    def asm_name(self) -> str:
        """Spelling in assembly text (lower case, e.g. ``fp8e4m3``)."""
        return self.name.lower()

    @property
    def accumulator(self) -> DType:
        """Type a matmul of this operand type accumulates in (int32 for integers, else fp32)."""
        return DType.FP32 if self.is_float else DType.INT32

    def nbytes(self, count: int) -> int:
        """Bytes occupied by ``count`` packed elements (4-bit types pack two per byte)."""
        return (count * _BITS_OF[self] + 7) // 8

    @classmethod
    def parse(cls, name: str) -> DType:
        try:
            return _BY_NAME[name.lower()]
        except KeyError:
            raise ValueError(
                f"unknown data type '{name}' (expected one of: {', '.join(_BY_NAME)})"
            ) from None


_BITS = {
    DType.INT4: 4,
    DType.INT8: 8,
    DType.FP8E4M3: 8,
    DType.FP8E5M2: 8,
    DType.BF16: 16,
    DType.FP16: 16,
    DType.FP32: 32,
    DType.INT32: 32,
    DType.FP4E2M1: 4,
}
_BITS_OF = tuple(_BITS[d] for d in DType)  # by code: a tuple index, no hashing
_BY_NAME = {d.asm_name: d for d in DType}
