"""A bandwidth shared by concurrent transfers: the fluid (processor-sharing) model.

Every transfer in flight gets a max-min fair share of the capacity, never more than its own
cap (a core's DMA rate, a link's width). Rates are recomputed only when a transfer starts or
finishes, so a transfer costs a few events however many bytes it moves — exact for the
fluid model, and the reason two concurrent loads each take twice as long as one.
"""

from __future__ import annotations

import heapq
import math

import simpy

from simulator.engine.steady import Wake


class _Flow:
    """``weight`` identical transfers moving in lockstep (one representative core's DMA
    standing for ``weight`` cores); ``remaining`` and ``rate`` are per transfer."""

    __slots__ = ("remaining", "cap", "rate", "event", "weight")

    def __init__(self, nbytes: float, cap: float, event: simpy.Event, weight: int) -> None:
        self.remaining = nbytes
        self.cap = cap
        self.rate = 0.0
        self.event = event
        self.weight = weight


class SharedBandwidth:
    """``capacity`` in bytes per ns shared by all transfers started with ``transfer``.

    When every transfer in flight has the same cap (the usual case: one chip's cores), they
    all move at one rate, so a virtual clock of bytes served per transfer and a heap of
    finishing points make each start and finish O(log n); transfers with mixed caps fall
    back to water-filling over a list.
    """

    def __init__(self, env: simpy.Environment, capacity: float, name: str = "") -> None:
        if capacity <= 0:
            raise ValueError(f"{name}: bandwidth must be positive")
        self.env = env
        self.capacity = capacity
        self.name = name
        self.flows: list[_Flow] = []  # mixed caps: each flow's remaining bytes and rate
        self._heap: list[tuple[float, int, _Flow]] = []  # one cap: (finish point, seq, flow)
        self._served = 0.0  # bytes each one-cap flow has received so far
        self._weight = 0  # flows the heap stands for
        self._cap = math.inf
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
        flow = _Flow(float(nbytes), cap, event, weight)
        if not self.flows and (not self._heap or cap == self._cap):
            self._cap = cap
            self._seq += 1
            heapq.heappush(self._heap, (self._served + nbytes, self._seq, flow))
            self._weight += weight
        else:
            self._to_list()
            self.flows.append(flow)
        self.bytes_moved += nbytes * weight
        self._reschedule()
        return event

    def _to_list(self) -> None:
        """Mixed caps from now on: the heap's flows join the list with what they have left."""
        for finish, _, f in self._heap:
            f.remaining = finish - self._served
            self.flows.append(f)
        self._heap.clear()
        self._weight = 0

    def _rate(self) -> float:
        return min(self._cap, self.capacity / self._weight)

    def _advance(self) -> None:
        now = self.env.now
        elapsed = now - self._last
        if elapsed > 0:
            if self._heap:
                self.busy_ns += elapsed
                self._served += self._rate() * elapsed
            elif self.flows:
                self.busy_ns += elapsed
                for f in self.flows:
                    f.remaining -= f.rate * elapsed
        self._last = now

    def _share(self) -> None:
        """Max-min fair (water-filling) rates under each flow's cap."""
        left = self.capacity
        n = sum(f.weight for f in self.flows)
        for f in sorted(self.flows, key=lambda fl: fl.cap):
            f.rate = min(f.cap, left / n)
            left -= f.rate * f.weight
            n -= f.weight

    def _reschedule(self) -> None:
        if self._heap:
            dt = (self._heap[0][0] - self._served) / self._rate()
        elif self.flows:
            self._share()
            dt = min(f.remaining / f.rate for f in self.flows)
        else:
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
        if self._heap:
            slack = 1e-6 * max(1.0, self._rate())
            done = [heapq.heappop(self._heap)[2]]  # the nearest, whatever the rounding
            while self._heap and self._heap[0][0] - self._served <= slack:
                done.append(heapq.heappop(self._heap)[2])
            for f in done:
                self._weight -= f.weight
                f.event.succeed()
        else:
            done = [f for f in self.flows if f.remaining <= 1e-6 * max(1.0, f.rate)]
            if not done:  # float rounding: finish the nearest one
                done = [min(self.flows, key=lambda fl: fl.remaining / fl.rate)]
            for f in done:
                self.flows.remove(f)
                f.event.succeed()
        self._reschedule()
