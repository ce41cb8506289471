"""A bandwidth shared by concurrent transfers: the fluid (processor-sharing) model.

Every transfer in flight gets a max-min fair share of the capacity, never more than its own
cap (a core's DMA rate, a link's width). Rates are recomputed only when a transfer starts or
finishes, so a transfer costs a few events however many bytes it moves — exact for the
fluid model, and the reason two concurrent loads each take twice as long as one.
"""

from __future__ import annotations

import math

import simpy


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
    """``capacity`` in bytes per ns shared by all transfers started with ``transfer``."""

    def __init__(self, env: simpy.Environment, capacity: float, name: str = "") -> None:
        if capacity <= 0:
            raise ValueError(f"{name}: bandwidth must be positive")
        self.env = env
        self.capacity = capacity
        self.name = name
        self.flows: list[_Flow] = []
        self._last = 0.0
        self._generation = 0
        self.bytes_moved = 0.0
        self.busy_ns = 0.0

    def transfer(self, nbytes: float, cap: float = math.inf, weight: int = 1) -> simpy.Event:
        """An event that fires when ``nbytes`` have moved at this flow's share."""
        event = self.env.event()
        if nbytes <= 0:
            event.succeed()
            return event
        self._advance()
        self.flows.append(_Flow(float(nbytes), cap, event, weight))
        self.bytes_moved += nbytes * weight
        self._reschedule()
        return event

    def _advance(self) -> None:
        now = self.env.now
        elapsed = now - self._last
        if elapsed > 0 and self.flows:
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
        self._generation += 1
        if not self.flows:
            return
        self._share()
        dt = min(f.remaining / f.rate for f in self.flows)
        gen = self._generation
        timer = self.env.timeout(max(dt, 0.0))
        timer.callbacks.append(lambda _ev: self._wake(gen))

    def _wake(self, gen: int) -> None:
        if gen != self._generation:
            return  # a start or finish since then rescheduled
        self._advance()
        done = [f for f in self.flows if f.remaining <= 1e-6 * max(1.0, f.rate)]
        if not done:  # float rounding: finish the nearest one
            done = [min(self.flows, key=lambda fl: fl.remaining / fl.rate)]
        for f in done:
            self.flows.remove(f)
            f.event.succeed()
        self._reschedule()
