"""How many rows a trace would hold, counted from the programs before anything runs.

A trace keeps one row per executed engine instruction, and loops are executed, not
unrolled, so a few lines of assembly can ask for billions of rows. ``check_trace`` refuses
such a run up front with the number and the limit, instead of filling memory with a list.
The count is an upper bound: a ``halt`` may end a program earlier.
"""

from __future__ import annotations

from collections.abc import Mapping

from isa.operands import Engine
from isa.program import Program
from simulator.engine.dedupe import group_identical
from simulator.errors import SimError

MAX_TRACE_EVENTS = 5_000_000  # ~1 GB of Chrome-trace JSON
UNTRACED = ("sem.signal", "sem.wait")


class TraceLimitError(SimError):
    """A trace would exceed its event limit; the message says how to lift it."""


def trace_events(program: Program) -> int:
    """Trace rows of one program: each engine instruction times its enclosing loop counts."""
    total, mult = 0, 1
    open_loops: list[tuple[int, int]] = []  # (end pc, multiplier outside the loop)
    for pc, ins in enumerate(program.instructions):
        while open_loops and pc >= open_loops[-1][0]:
            mult = open_loops.pop()[1]
        if ins.mnemonic == "loop":
            open_loops.append((ins["end"], mult))
            mult *= max(ins["count"], 0)
        elif ins.engine is not Engine.CONTROL and ins.mnemonic not in UNTRACED:
            total += mult
    return total


def trace_size(programs: Mapping[tuple[int, int], Program], dedupe: bool = True) -> int:
    """Trace rows of a run of {(chip, core): program}: one core per class of identical
    programs when ``dedupe``, as the simulator runs them."""
    reps = group_identical(programs)[0] if dedupe else programs
    return sum(trace_events(p) for p in reps.values())


def check_trace(events: int, limit: int) -> None:
    """Refuse a trace of more than ``limit`` events, before anything is simulated."""
    if events > limit:
        raise TraceLimitError(
            f"--trace: this run would record up to {events:,} trace events, over the limit "
            f"of {limit:,}; raise --max-trace-events, or trace a smaller run")
