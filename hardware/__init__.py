"""The hardware description: chips and systems as frozen dataclasses, loaded from YAML.

Both the mapper and the simulator import it; it imports nothing of theirs. Public API:
``ChipConfig`` (``hardware.chip``), ``load_chip`` / ``with_overrides`` / ``list_presets`` /
``ConfigError`` (``hardware.chips``), ``SystemConfig`` / ``LinkConfig``
(``hardware.system``), ``load_system`` / ``list_systems`` (``hardware.systems``).
"""

from hardware.chip import ChipConfig
from hardware.chips import ConfigError, list_presets, load_chip, with_overrides
from hardware.system import LinkConfig, SystemConfig
from hardware.systems import list_systems, load_system

__all__ = ["ChipConfig", "ConfigError", "LinkConfig", "SystemConfig", "list_presets",
           "list_systems", "load_chip", "load_system", "with_overrides"]
