"""Semaphores and barriers: the only ordering between engines, as the ISA defines it."""

from __future__ import annotations

from collections import deque

import simpy


class Semaphore:
    """A counting semaphore: ``signal`` adds one; ``wait(n)`` blocks until n, then takes n."""

    __slots__ = ("env", "count", "waiters", "clock")

    def __init__(self, env: simpy.Environment) -> None:
        self.env = env
        self.count = 0
        self.waiters: deque[tuple[int, simpy.Event]] = deque()
        self.clock: list[int] | None = None  # join of the signallers' vector clocks

    def signal(self) -> None:
        self.count += 1
        while self.waiters and self.waiters[0][0] <= self.count:
            need, event = self.waiters.popleft()
            self.count -= need
            event.succeed()

    def wait(self, need: int) -> simpy.Event | None:
        """None when it can proceed at once (no event needed), else the event to yield."""
        if not self.waiters and self.count >= need:
            self.count -= need
            return None
        event = self.env.event()
        self.waiters.append((need, event))
        return event


class Barrier:
    """All ``parties`` meet; the last to arrive releases everyone (reusable)."""

    def __init__(self, env: simpy.Environment, parties: int) -> None:
        self.env = env
        self.parties = parties
        self.arrived = 0
        self.event = env.event()

    def arrive(self, weight: int = 1) -> simpy.Event:
        """Arrive as ``weight`` parties (a representative of identical cores)."""
        event = self.event
        self.arrived += weight
        if self.arrived >= self.parties:
            self.arrived = 0
            self.event = self.env.event()
            event.succeed()
        return event
