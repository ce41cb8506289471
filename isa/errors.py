"""The root of Tessera's user-facing errors: the CLI prints any of them as one line."""

from __future__ import annotations


class TesseraError(Exception):
    """An error in a user's input or request; ``str()`` is the one line to show them."""


class DecodeError(TesseraError):
    """A binary program is truncated, corrupted or not a Tessera binary."""
