"""A bandwidth shared by concurrent transfers: the fluid (processor-sharing) model.

Every transfer in flight gets a max-min fair share of the capacity, never more than its own
cap (a core's DMA rate, a link's width). Rates are recomputed only when a transfer starts or
finishes, so a transfer costs a few events however many bytes it moves — exact for the
fluid model, and the reason two concurrent loads each take twice as long as one.
"""

from __future__ import annotations

import heapq
import math
from bisect import insort

import simpy

from simulator.engine.steady import Wake


class _Flow:
    """``weight`` identical transfers moving in lockstep (one representative core's DMA
    standing for ``weight`` cores)."""

    __slots__ = ("event", "weight")

    def __init__(self, event: simpy.Event, weight: int) -> None:
        self.event = event
        self.weight = weight


class _Class:
    """The transfers in flight with one cap. Max-min fairness gives equal caps equal rates,
    so they all move at ``rate``: a virtual clock ``served`` (bytes each has received) and a
    heap of finishing points make a start or a finish O(log n)."""

    __slots__ = ("cap", "heap", "served", "weight", "rate")

    def __init__(self, cap: float) -> None:
        self.cap = cap
        self.heap: list[tuple[float, int, _Flow]] = []  # (finish point, seq, flow)
        self.served = 0.0
        self.weight = 0  # transfers the heap stands for
        self.rate = 0.0

    def __lt__(self, other: _Class) -> bool:
        return self.cap < other.cap


class SharedBandwidth:
    """``capacity`` in bytes per ns shared by all transfers started with ``transfer``.

    Transfers are grouped by cap (a chip has a few: a core's loads split between L2 and
    HBM, its stores, a kernel's window), so water-filling is over the classes, not the
    transfers: a start or a finish costs O(classes + log n).
    """

    def __init__(self, env: simpy.Environment, capacity: float, name: str = "") -> None:
        if capacity <= 0:
            raise ValueError(f"{name}: bandwidth must be positive")
        self.env = env
        self.capacity = capacity
        self.name = name
        self.classes: dict[float, _Class] = {}
        self.order: list[_Class] = []  # by cap: the water-filling order
        self._weight = 0  # transfers in flight, all classes
        self._seq = 0
        self._last = 0.0
        self._generation = 0
        # the nearest finish as last computed, and when the armed timer fires (inf: none).
        # A start that only delays the nearest finish keeps the armed timer: it fires early,
        # finds nothing done and re-arms, instead of leaving a stale timer per start.
        self._due = math.inf
        self._timer_at = math.inf
        self.bytes_moved = 0.0
        self.busy_ns = 0.0

    def transfer(self, nbytes: float, cap: float = math.inf, weight: int = 1) -> simpy.Event:
        """An event that fires when ``nbytes`` have moved at this flow's share."""
        event = self.env.event()
        if nbytes <= 0:
            event.succeed()
            return event
        self._advance()
        c = self.classes.get(cap)
        if c is None:
            c = self.classes[cap] = _Class(cap)
            insort(self.order, c)
        self._seq += 1
        heapq.heappush(c.heap, (c.served + nbytes, self._seq, _Flow(event, weight)))
        c.weight += weight
        self._weight += weight
        self.bytes_moved += nbytes * weight
        self._share()
        self._reschedule()
        return event

    def _share(self) -> None:
        """Max-min fair (water-filling) rates under each class's cap."""
        left, n = self.capacity, self._weight
        for c in self.order:
            if c.weight:
                c.rate = min(c.cap, left / n)
                left -= c.rate * c.weight
                n -= c.weight

    def _advance(self) -> None:
        now = self.env.now
        elapsed = now - self._last
        if elapsed > 0 and self._weight:
            self.busy_ns += elapsed
            for c in self.order:
                if c.weight:
                    c.served += c.rate * elapsed
        self._last = now

    def _nearest(self) -> tuple[float, _Class | None]:
        """(ns until the first finish, its class)."""
        best, which = math.inf, None
        for c in self.order:
            if c.weight:
                dt = (c.heap[0][0] - c.served) / c.rate
                if dt < best:
                    best, which = dt, c
        return best, which

    def _reschedule(self) -> None:
        dt, _ = self._nearest()
        if dt == math.inf:
            self._due = math.inf
            return
        delay = max(dt, 0.0)
        self._due = self.env.now + delay
        if self._due < self._timer_at:  # sooner than the armed timer (or none): arm anew
            self._generation += 1
            self._timer_at = self._due
            timer = self.env.timeout(delay)
            timer.callbacks.append(Wake(self, self._generation))

    def _wake(self, gen: int) -> None:
        if gen != self._generation:
            return  # a sooner timer was armed since
        self._timer_at = math.inf
        self._advance()
        if self.env.now < self._due:  # armed for a finish a later start put off: re-arm
            self._reschedule()
            return
        _, first = self._nearest()
        done: list[tuple[float, int, _Flow]] = []
        touched = 0  # classes with a finish now
        for c in self.order:
            if not c.weight:
                continue
            slack = 1e-6 * max(1.0, c.rate)
            n = len(done)
            if c is first:  # the nearest, whatever the rounding
                finish, seq, f = heapq.heappop(c.heap)
                done.append(((finish - c.served) / c.rate, seq, f))
            while c.heap and c.heap[0][0] - c.served <= slack:
                finish, seq, f = heapq.heappop(c.heap)
                done.append(((finish - c.served) / c.rate, seq, f))
            for _, _, f in done[n:]:
                c.weight -= f.weight
                self._weight -= f.weight
            touched += len(done) > n
        if touched > 1:  # finishes of several classes: in the order they reach zero
            done.sort(key=lambda d: (d[0], d[1]))
        self._share()
        for _, _, f in done:
            f.event.succeed()
        self._reschedule()
