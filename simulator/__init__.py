"""The simulator: ISA programs on a discrete-event model of chips -> a ``SimResult``.

Public API (the rest are internals): ``simulate`` (one chip), ``simulate_system`` (chips
joined by links), ``RunLimits``, ``SimResult``, ``SimError``. Parts: ``engine/`` (machine,
cores, engines, instruction costs), ``memory/`` (shared bandwidth, L2, bounds),
``network/`` (links, collectives), ``functional/`` (real values), ``run``, ``energy``,
``result``.
"""

from importlib import import_module

# name -> module: imported on first use, so ``import simulator.x`` stays cheap
_API = {
    "simulate": "simulator.run",
    "simulate_system": "simulator.run",
    "RunLimits": "simulator.engine.machine",
    "SimResult": "simulator.result",
    "SimError": "simulator.errors",
}
__all__ = sorted(_API)


def __getattr__(name: str) -> object:
    if name in _API:
        return getattr(import_module(_API[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
