"""The simulator: ISA programs on a discrete-event model of chips -> a ``SimResult``.

Public API (the rest are internals): ``simulate`` (one chip), ``simulate_system`` (chips
joined by links), ``RunLimits``, ``SimResult``, ``SimError``. Parts: ``engine/`` (machine,
cores, engines, instruction costs), ``memory/`` (shared bandwidth, L2, bounds),
``network/`` (links, collectives), ``functional/`` (real values), ``run``, ``energy``,
``result``.
"""

from isa.lazy import lazy_attribute

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
    return lazy_attribute(_API, __name__, name)
