"""Functional-mode state: the memories, the semantics hook, and data-race detection.

Races are found by happens-before, not by timing luck: every engine carries a vector clock;
``sem.signal`` publishes the signaller's clock on the semaphore, ``sem.wait`` joins it, and a
barrier joins all engines. Two accesses to overlapping bytes, one a write, race when neither
happens-before the other — even if this run's timing happened to keep them apart.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from isa.operands import Engine, Space
from isa.program import Instruction
from simulator.engine.streams import STREAM_ENGINES
from simulator.errors import SimError
from simulator.functional.access import ADD, Access
from simulator.functional.memory import DEFAULT_LIMIT, PagedMemory, allocate_flat
from simulator.functional.semantics import BY_CORE, BY_NETWORK, SEMANTICS

if TYPE_CHECKING:
    from simulator.engine.core import CoreSim
    from simulator.engine.machine import Machine

MAX_RACES = 20


class FunctionalState:
    def __init__(self, memory_limit: int | None = None) -> None:
        self.limit = memory_limit or DEFAULT_LIMIT
        self.races: list[str] = []
        self.memories: dict[tuple[int, int], dict[Space, object]] = {}
        self.hbm: list[PagedMemory] = []
        self.net_ops: dict[str, object] = {}

    # -- setup -----------------------------------------------------------------------------
    def attach(self, machine: Machine) -> None:
        self.machine = machine
        budget = [self.limit]
        self.hbm = [PagedMemory(f"chip {i} HBM", c.hbm.capacity, self.limit)
                    for i, c in enumerate(machine.chips)]
        index = 0
        self.slot: dict[tuple[int, int, Engine], int] = {}
        for core in machine.cores:
            cfg = core.chip.core
            tag = f"chip {core.chip_id} core {core.core_id}"
            self.memories[(core.chip_id, core.core_id)] = {
                Space.HBM: self.hbm[core.chip_id],
                Space.SRAM: allocate_flat(f"{tag} SRAM", cfg.sram.capacity, budget),
                Space.ACC: allocate_flat(f"{tag} accumulator", cfg.acc.capacity, budget),
            }
            for e in STREAM_ENGINES:
                self.slot[(core.chip_id, core.core_id, e)] = index
                index += 1
        self.clocks = {key: [0] * index for key in self.slot}
        self.history: list[tuple] = []  # (slot, epoch, where, grouped ranges)
        self.barrier_join: dict[tuple[int, int, int], list[int]] = {}
        self.barrier_seen: dict[tuple, int] = {}  # occurrences per (engine, barrier scope)
        for core in machine.cores:
            self._load_data(core)

    def _load_data(self, core: CoreSim) -> None:
        mems = self.memories[(core.chip_id, core.core_id)]
        for seg in core.program.data:
            import numpy as np

            mems[seg.space].write(seg.addr, np.frombuffer(seg.data, np.uint8), "data segment")

    def memory(self, chip: int, core: int, space: Space):
        return self.memories[(chip, core)][space]

    # -- execution -------------------------------------------------------------------------
    def execute(self, core: CoreSim, engine: Engine, pc: int, ins: Instruction,
                regs: list[int]) -> None:
        mems = self.memories[(core.chip_id, core.core_id)]
        scopes = {Space.HBM: core.chip_id, Space.SRAM: (core.chip_id, core.core_id),
                  Space.ACC: (core.chip_id, core.core_id)}
        ctx = Access(mems, scopes, ins, regs)  # type: ignore[arg-type]
        fn = SEMANTICS.get(ins.mnemonic)
        try:
            if fn is not None:
                fn(ctx, ins)
            elif ins.mnemonic in BY_NETWORK:
                self.machine.network.functional(self, core, ctx, ins)
            elif ins.mnemonic not in BY_CORE:
                raise SimError(f"{core.where(pc)}: {ins.mnemonic} has no functional semantics")
        except (ValueError, IndexError) as exc:
            raise SimError(f"{core.where(pc)}: {exc}") from None
        self._check_races(core, engine, pc, ctx.ranges)

    # -- happens-before --------------------------------------------------------------------
    def _key(self, core: CoreSim, engine: Engine) -> tuple[int, int, Engine]:
        return (core.chip_id, core.core_id, engine)

    def on_signal(self, core: CoreSim, engine: Engine, number: int) -> None:
        sem = core.sem(number)
        clock = self.clocks[self._key(core, engine)]
        sem.clock = clock[:] if sem.clock is None else [max(a, b) for a, b in zip(sem.clock,
                                                                                   clock)]

    def on_wait(self, core: CoreSim, engine: Engine, number: int) -> None:
        sem = core.sem(number)
        if sem.clock is not None:
            self._join(self._key(core, engine), sem.clock)

    def on_barrier_arrive(self, core: CoreSim, engine: Engine, scope: tuple) -> None:
        key = self._key(core, engine)
        n = self.barrier_seen.get((*key, scope), 0)
        joined = self.barrier_join.setdefault((*scope, n), [0] * len(self.clocks[key]))
        for i, v in enumerate(self.clocks[key]):
            joined[i] = max(joined[i], v)

    def on_barrier_leave(self, core: CoreSim, engine: Engine, scope: tuple) -> None:
        key = self._key(core, engine)
        n = self.barrier_seen.get((*key, scope), 0)
        self.barrier_seen[(*key, scope)] = n + 1
        self._join(key, self.barrier_join[(*scope, n)])

    def _join(self, key: tuple, other: list[int]) -> None:
        mine = self.clocks[key]
        for i, v in enumerate(other):
            if v > mine[i]:
                mine[i] = v

    def _check_races(self, core: CoreSim, engine: Engine, pc: int, ranges: list) -> None:
        key = self._key(core, engine)
        me = self.slot[key]
        clock = self.clocks[key]
        clock[me] += 1
        where = f"{core.where(pc)} on {engine.value}"
        mine = _group(ranges)
        for rec in self.history:
            slot, epoch, o_where, o_groups = rec
            if slot == me or clock[slot] >= epoch:
                continue  # same engine (program order) or happens-before
            for (space, scope, write), (lo, hi, blo, bhi) in mine.items():
                for o_write in (False, True, ADD):
                    other = o_groups.get((space, scope, o_write))
                    if other is None or not (write or o_write) or write == o_write == ADD:
                        continue
                    span = _overlap(lo, hi, blo, bhi, *other)
                    if span is not None:
                        first, second = sorted((o_where, where))
                        self._report(first, second, space, *span)
        if mine:
            self.history.append((me, clock[me], where, mine))
        if len(self.history) > 512:
            self._prune()

    def _prune(self) -> None:
        """Forget accesses every engine already happens-after: they can race with nothing."""
        floor = [min(c[i] for c in self.clocks.values()) for i in range(len(self.slot))]
        self.history = [h for h in self.history if h[1] > floor[h[0]]]

    def _report(self, first: str, second: str, space: Space, lo: int, hi: int) -> None:
        if len(self.races) < MAX_RACES:
            msg = (f"data race on {space.asm_name} [{lo:#x}, {hi:#x}): {first} and {second} "
                   f"are not ordered by any semaphore or barrier")
            if msg not in self.races:
                self.races.append(msg)


def _group(ranges: list) -> dict[tuple, tuple]:
    """Ranges by (space, scope, is_write): sorted lo/hi arrays and their bounding box."""
    import numpy as np

    by: dict[tuple, list] = {}
    for space, scope, lo, hi, write in ranges:
        by.setdefault((space, scope, write), []).append((lo, hi))
    out = {}
    for key, items in by.items():
        arr = np.array(items, dtype=np.int64)
        out[key] = (arr[:, 0], arr[:, 1], int(arr[:, 0].min()), int(arr[:, 1].max()))
    return out


def _overlap(lo, hi, blo: int, bhi: int, olo, ohi, oblo: int, obhi: int):  # noqa: ANN001
    """The span of bytes both sets of intervals touch, or None."""
    if blo >= obhi or oblo >= bhi:
        return None
    hit = (lo[:, None] < ohi[None, :]) & (olo[None, :] < hi[:, None])
    if not hit.any():
        return None
    i, j = hit.nonzero()
    start = max(int(lo[i].min()), int(olo[j].min()))
    stop = min(int(hi[i].max()), int(ohi[j].max()))
    return start, max(stop, start + 1)
