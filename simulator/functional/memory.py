"""Byte-addressed memories for functional mode, refused up front when they would not fit.

HBM is paged (only touched pages exist), so an 80 GB HBM costs what the program touches;
SRAM and accumulators are flat arrays of their configured capacity, checked against a
memory limit before anything is allocated.
"""

from __future__ import annotations

import numpy as np

from isa.dtypes import DType
from simulator.errors import SimError

PAGE = 1 << 20
DEFAULT_LIMIT = 8 << 30  # bytes of host memory functional mode may allocate


class Memory:
    """Base: bounds-checked byte reads and writes, and strided tile access."""

    def __init__(self, name: str, capacity: int) -> None:
        self.name = name
        self.capacity = capacity

    def check(self, addr: int, n: int, what: str) -> None:
        if addr < 0 or addr + n > self.capacity:
            raise SimError(f"{what}: {self.name} access [{addr:#x}, {addr + n:#x}) is outside "
                           f"its {self.capacity:#x} bytes")

    def read(self, addr: int, n: int, what: str) -> np.ndarray:
        raise NotImplementedError

    def write(self, addr: int, data: np.ndarray, what: str) -> None:
        raise NotImplementedError

    def read_rows(self, starts: list[int], run: int, what: str) -> np.ndarray:
        """Concatenate ``run`` bytes read at each of ``starts``."""
        if not starts:
            return np.zeros(0, np.uint8)
        return np.concatenate([self.read(s, run, what) for s in starts])

    def write_rows(self, starts: list[int], run: int, data: np.ndarray, what: str) -> None:
        for i, s in enumerate(starts):
            self.write(s, data[i * run:(i + 1) * run], what)


class FlatMemory(Memory):
    def __init__(self, name: str, capacity: int) -> None:
        super().__init__(name, capacity)
        self.data = np.zeros(capacity, dtype=np.uint8)

    def read(self, addr: int, n: int, what: str) -> np.ndarray:
        self.check(addr, n, what)
        return self.data[addr:addr + n].copy()

    def write(self, addr: int, data: np.ndarray, what: str) -> None:
        self.check(addr, len(data), what)
        self.data[addr:addr + len(data)] = data


class PagedMemory(Memory):
    """Sparse memory of 1 MiB pages; untouched bytes read as zero."""

    def __init__(self, name: str, capacity: int, limit: int) -> None:
        super().__init__(name, capacity)
        self.pages: dict[int, np.ndarray] = {}
        self.limit = limit

    def _page(self, index: int) -> np.ndarray:
        page = self.pages.get(index)
        if page is None:
            if (len(self.pages) + 1) * PAGE > self.limit:
                raise SimError(f"functional mode: {self.name} touched more than the "
                               f"{self.limit >> 20} MiB memory limit; raise --memory-limit")
            page = self.pages[index] = np.zeros(PAGE, dtype=np.uint8)
        return page

    def read(self, addr: int, n: int, what: str) -> np.ndarray:
        self.check(addr, n, what)
        out = np.empty(n, dtype=np.uint8)
        pos = 0
        while pos < n:
            index, off = divmod(addr + pos, PAGE)
            take = min(n - pos, PAGE - off)
            page = self.pages.get(index)
            out[pos:pos + take] = 0 if page is None else page[off:off + take]
            pos += take
        return out

    def write(self, addr: int, data: np.ndarray, what: str) -> None:
        n = len(data)
        self.check(addr, n, what)
        pos = 0
        while pos < n:
            index, off = divmod(addr + pos, PAGE)
            take = min(n - pos, PAGE - off)
            self._page(index)[off:off + take] = data[pos:pos + take]
            pos += take


def element_offset(dtype: DType, elements: int, what: str) -> int:
    """Byte offset of an element index; int4 elements must start on a byte."""
    bits = elements * dtype.bits
    if bits % 8:
        raise SimError(f"{what}: int4 tile rows must start on a whole byte (even element index)")
    return bits // 8


def allocate_flat(name: str, capacity: int, budget: list[int]) -> FlatMemory:
    """A flat memory, refused before allocation when it would exceed the remaining budget."""
    if capacity > budget[0]:
        raise SimError(f"functional mode: {name} of {capacity >> 20} MiB exceeds the "
                       f"{budget[0] >> 20} MiB left of the memory limit; raise --memory-limit "
                       f"or use performance mode")
    budget[0] -= capacity
    return FlatMemory(name, capacity)
