"""The memory view of one executing instruction: typed loads and stores that are recorded.

Every byte range read or written goes through here, so the race detector sees exactly what
the instruction touched, and element types are converted in one place.
"""

from __future__ import annotations

import numpy as np

from isa import numerics as nx
from isa.dtypes import DType
from isa.operands import MemRef, Space
from isa.program import Instruction
from simulator.functional.memory import Memory

# (space, scope, lo, hi, is_write): scope is the chip for HBM, (chip, core) otherwise;
# is_write is ADD for a reduce-add store (adds commute with each other, not with the rest)
Range = tuple[Space, object, int, int, int]
ADD = 2


class Access:
    def __init__(self, memories: dict[Space, Memory], scopes: dict[Space, object],
                 ins: Instruction, regs: list[int]) -> None:
        self.memories = memories
        self.scopes = scopes
        self.ins = ins
        self.regs = regs
        self.ranges: list[Range] = []
        self.what = ins.mnemonic

    def mem(self, name: str) -> MemRef:
        """Operand ``name`` with its address register added (the effective address)."""
        ref = self.ins.operand(name)
        assert isinstance(ref, MemRef)
        if ref.reg is None:
            return ref
        return MemRef(ref.space, ref.addr + self.regs[ref.reg])

    def _note(self, ref: MemRef, lo: int, hi: int, write: bool) -> None:
        self.ranges.append((ref.space, self.scopes[ref.space], lo, hi, write))

    def read_bytes(self, ref: MemRef, n: int) -> np.ndarray:
        self._note(ref, ref.addr, ref.addr + n, False)
        return self.memories[ref.space].read(ref.addr, n, self.what)

    def write_bytes(self, ref: MemRef, data: np.ndarray) -> None:
        self._note(ref, ref.addr, ref.addr + len(data), True)
        self.memories[ref.space].write(ref.addr, data, self.what)

    def read_rows(self, ref: MemRef, starts: list[int], run: int) -> np.ndarray:
        for s in starts:
            self._note(ref, s, s + run, False)
        return self.memories[ref.space].read_rows(starts, run, self.what)

    def write_rows(self, ref: MemRef, starts: list[int], run: int, data: np.ndarray) -> None:
        for s in starts:
            self._note(ref, s, s + run, True)
        self.memories[ref.space].write_rows(starts, run, data, self.what)

    def add_rows(self, ref: MemRef, starts: list[int], run: int, rows: np.ndarray,
                 dtype: DType, count: int) -> None:
        """Rows (raw bytes in ``dtype``) added into memory, recorded as commuting adds."""
        for s in starts:
            self._note(ref, s, s + run, ADD)  # type: ignore[arg-type]
        mem = self.memories[ref.space]
        old = nx.from_bytes(mem.read_rows(starts, run, self.what), dtype, count)
        new = old + nx.from_bytes(np.asarray(rows).reshape(-1), dtype, count)
        mem.write_rows(starts, run, nx.to_bytes(new, dtype), self.what)

    def load(self, ref: MemRef, dtype: DType, count: int) -> np.ndarray:
        return nx.from_bytes(self.read_bytes(ref, dtype.nbytes(count)), dtype, count)

    def store(self, ref: MemRef, dtype: DType, values: np.ndarray) -> None:
        self.write_bytes(ref, nx.to_bytes(np.ascontiguousarray(values).reshape(-1), dtype))
