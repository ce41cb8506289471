"""Values derived from a program, kept for as long as the program object lives.

Streams, signatures, bounds and digests are each a pass over every instruction, asked for
again by a power-capped kernel's reruns, a tensor-parallel group's ranks and the cost key.
They are kept by the program's identity (hashing a program would itself walk every
instruction) and dropped when the program is: a table that held its programs alive (as
these once did, up to thousands of them) kept every kernel of a whole layer in memory
after its simulation, and the cycle collector scanned all of it again and again.
"""

from __future__ import annotations

import weakref
from collections.abc import Hashable

from isa.program import Program


class PerProgram:
    """``program -> value`` (with an optional ``extra`` key part), by identity, weakly."""

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        self._entries: dict[tuple, tuple[weakref.ref, object]] = {}

    def get(self, program: Program, extra: Hashable = None) -> object:
        """The value kept for this very program (None: nothing)."""
        entry = self._entries.get((id(program), extra))
        return entry[1] if entry is not None and entry[0]() is program else None

    def put(self, program: Program, value: object, extra: Hashable = None) -> None:
        key = (id(program), extra)
        entries = self._entries

        def gone(ref: weakref.ref, key: tuple = key) -> None:
            entry = entries.get(key)
            if entry is not None and entry[0] is ref:
                del entries[key]
        entries[key] = (weakref.ref(program, gone), value)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
