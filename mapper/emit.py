"""Instruction emission helpers: per-engine sequences, loops with address registers.

A kernel writes one sequence per engine; because each engine runs only its own
instructions in order, the sequences are simply concatenated into the core's program, and
software pipelining (prefetch, delayed stores) is a matter of each engine's own order.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

from isa import Instruction, MemRef, Space, build

Item = Instruction | tuple  # a tuple is a loop placeholder: ("loop", count, body_len, regs)


# Memory operands are immutable values, so each distinct one is made once: a kernel asks
# for the same few thousand addresses again and again, and one shared object also makes
# ``build``'s cache lookups compare by identity (4x faster program building).
@lru_cache(maxsize=1 << 16)
def hbm(addr: int, reg: int | None = None) -> MemRef:
    return MemRef(Space.HBM, addr, reg)


@lru_cache(maxsize=1 << 16)
def sram(addr: int, reg: int | None = None) -> MemRef:
    return MemRef(Space.SRAM, addr, reg)


@lru_cache(maxsize=1 << 16)
def acc(addr: int, reg: int | None = None) -> MemRef:
    return MemRef(Space.ACC, addr, reg)


def loop(count: int, body: list[Item], regs: tuple[tuple[str, int], ...] = ()) -> list[Item]:
    """``body`` repeated ``count`` times (emitted once); regs = ((\"a0\", inc), ...) at most 2."""
    if count <= 0:
        return []
    if count == 1 and not any(isinstance(b, tuple) for b in body):
        return list(body)
    return [("loop", count, _length(body), regs), *body]


def _length(items: list[Item]) -> int:
    return len(items)


def resolve(items: list[Item], base: int = 0) -> list[Instruction]:
    """Turn loop placeholders into ``loop`` instructions with absolute end indices."""
    out = list(items)
    for i in [i for i, it in enumerate(items) if it.__class__ is tuple]:  # the few loops
        _, count, body_len, regs = items[i]
        args: list[object] = [count, 0]
        for reg, inc in regs:
            args += [reg, inc]
        # each loop's end is its own: the loop built once at end 0, then its end set
        out[i] = build("loop", *args).with_operand("end", base + i + 1 + body_len)
    return out  # type: ignore[return-value]


def steps(n: int, step: Callable[[int, bool], list[Item]], regs: tuple[tuple[str, int], ...],
          first: int = 0, group: int = 2) -> list[Item]:
    """Emit pipeline steps ``first .. first+n-1``, buffers rotating with ``k % group``.

    Whole groups run in one loop whose registers advance by one group per iteration:
    ``step(k, True)`` addresses step ``k`` as base(k) + register. Left-over steps (and a lone
    group) are emitted with absolute addresses, ``step(k, False)``.
    """
    groups = n // group
    out: list[Item] = []
    done = 0
    if groups >= 2:
        body: list[Item] = []
        for i in range(group):
            body += step(first + i, True)
        out += loop(groups, body, regs)
        done = group * groups
    for k in range(first + done, first + n):
        out += step(k, False)
    return out


class Arena:
    """Bump allocation of a kernel's SRAM regions, each aligned for whole bursts."""

    def __init__(self, align: int = 64) -> None:
        self.align = align
        self.size = 0

    def take(self, nbytes: int) -> int:
        at = self.size
        self.size += -(-nbytes // self.align) * self.align
        return at
