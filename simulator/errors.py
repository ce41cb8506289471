"""Errors the simulator raises for a program or configuration it cannot run."""

from __future__ import annotations

from isa.errors import TesseraError


class SimError(TesseraError):
    """A program cannot run on this hardware (out-of-range memory, unsupported type...)."""


class DeadlockError(SimError):
    """Engines wait for each other forever; the message names every blocked instruction."""


class BudgetError(SimError):
    """The run exceeded its simulated-time or instruction budget (a runaway program)."""
