"""The mapper: transformer graphs lowered to per-core ISA programs for a described chip.

Public API: ``load_model`` / ``ModelConfig`` / ``list_models`` (model presets, YAML,
Hugging Face config.json), ``Phase``, ``MapOptions``, ``map_model`` (one chip),
``Parallel`` / ``map_system`` (a split over chips), ``footprint`` / ``check_fit`` (memory
per chip), ``estimate_instructions`` (work before lowering).
"""

from isa.lazy import lazy_attribute

# name -> module: imported on first use, so ``import mapper.x`` stays cheap
_API = {
    "load_model": "mapper.model",
    "ModelConfig": "mapper.model",
    "list_models": "mapper.model",
    "Phase": "mapper.layers",
    "MapOptions": "mapper.pipeline",
    "map_model": "mapper.pipeline",
    "Parallel": "mapper.parallel",
    "map_system": "mapper.parallel",
    "footprint": "mapper.footprint",
    "check_fit": "mapper.footprint",
    "estimate_instructions": "mapper.workload",
}
__all__ = sorted(_API)


def __getattr__(name: str) -> object:
    return lazy_attribute(_API, __name__, name)
