"""Package attributes imported on first use, so importing a sub-module stays cheap."""

from __future__ import annotations

from importlib import import_module


def lazy_attribute(api: dict[str, str], package: str, name: str) -> object:
    """``api[name]``'s attribute ``name`` (``api``: public name -> module that defines it)."""
    if name in api:
        return getattr(import_module(api[name]), name)
    raise AttributeError(f"module {package!r} has no attribute {name!r}")
