"""Load chip descriptions from YAML into the dataclasses of ``hardware.chip``.

The one loader (``hardware.loader``) walks the dataclass type hints and each field's
metadata (unit, bounds), so every field is checked the same way, and every error names the
file and the dotted field: ``h100.yaml: core.array.rows: must be a positive integer, got
-4``. YAML is read with ``safe_load`` only. Cross-field rules are ``_validate``'s.
"""

from __future__ import annotations

import dataclasses
from enum import Enum
from pathlib import Path

from hardware import chip as hw
from hardware.loader import from_dict, resolve
from hardware.yamlfile import read_yaml
from isa.dtypes import DType
from isa.errors import TesseraError
from isa.table import VECTOR_CLASSES

PRESETS = Path(__file__).parent / "presets" / "chips"

class ConfigError(TesseraError):
    """A configuration file or value is wrong; the message names the file and field."""


def list_presets() -> list[str]:
    return sorted(p.stem for p in PRESETS.glob("*.yaml"))


def load_chip(name_or_path: str | Path) -> hw.ChipConfig:
    """A preset by name (``h100``) or a chip YAML file."""
    path = _resolve(name_or_path)
    return chip_from_dict(_read_yaml(path), path.name)


def _resolve(name_or_path: str | Path) -> Path:
    from hardware.systems import list_systems

    hint = {name: f"'{name}' is a system preset (several chips), not a chip: use --system "
                  f"{name}" for name in list_systems()}
    return resolve(name_or_path, PRESETS, "chip", ConfigError, other=hint)


def _read_yaml(path: Path) -> dict:
    data = read_yaml(path, ConfigError)
    if not isinstance(data, dict):
        raise ConfigError(f"{path.name}: expected a mapping of chip fields at the top level")
    return data


# fields that left the chip file, and where they live now
MOVED = {"energy.link_pj_per_byte": "link energy is a property of the links: set "
                                    "link.pj_per_byte in the system file",
         "core.sram.banks": "banks are not modelled (the port's bytes_per_cycle is): remove it",
         "core.acc.banks": "banks are not modelled (the port's bytes_per_cycle is): remove it"}


def chip_from_dict(data: dict, source: str = "<dict>") -> hw.ChipConfig:
    chip = from_dict(hw.ChipConfig, data, source, ConfigError, moved=MOVED)
    _validate(chip, source)
    return chip


def chip_to_dict(chip: hw.ChipConfig) -> dict:
    """Plain data (dtype names, enum values) that ``chip_from_dict`` reads back."""
    def plain(v: object) -> object:
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, dict):
            return {(k.asm_name if isinstance(k, DType) else k): plain(x) for k, x in v.items()}
        if isinstance(v, Enum):
            return v.value
        return v
    return plain(chip)  # type: ignore[return-value]


def with_overrides(chip: hw.ChipConfig, overrides: dict[str, object],
                   source: str = "overrides", check_chip: bool = True) -> hw.ChipConfig:
    """A copy with dotted fields replaced, e.g. {"core.array.rows": 256}. Without
    ``check_chip`` only each field is checked (its type, unit, range), not whether the
    fields make a chip together (a sweep checks one value of a path at a time)."""
    data = chip_to_dict(chip)
    for dotted, value in overrides.items():
        node = data
        parts = dotted.split(".")
        for p in parts[:-1]:
            if not isinstance(node.get(p), dict):
                groups = ", ".join(k for k, v in node.items() if isinstance(v, dict))
                raise ConfigError(f"{source}: unknown field '{dotted}' ('{p}' is not one of: "
                                  f"{groups})")
            node = node[p]
        if parts[-1] not in node:
            raise ConfigError(f"{source}: unknown field '{dotted}' (expected one of: "
                              f"{', '.join(node)})")
        node[parts[-1]] = value
    if not check_chip:
        return from_dict(hw.ChipConfig, data, source, ConfigError, moved=MOVED)
    return chip_from_dict(data, source)


GEMM_WINDOW_MAX = 65535 * 1024  # the ISA's window operand: 16 bits of KiB


def _validate(chip: hw.ChipConfig, source: str) -> None:
    """Cross-field rules a single field cannot check."""
    a, core = chip.core.array, chip.core
    feed = (a.rows + a.cols) * 2
    if core.sram.bytes_per_cycle < feed:
        raise ConfigError(f"{source}: core.sram.bytes_per_cycle: {core.sram.bytes_per_cycle} "
                          f"cannot feed a {a.rows}x{a.cols} array (needs >= {feed}: one bf16 "
                          f"element per array edge per cycle)")
    if core.acc.capacity < a.rows * a.cols * 4:
        raise ConfigError(f"{source}: core.acc.capacity: {core.acc.capacity} B is smaller than "
                          f"one {a.rows}x{a.cols} fp32 tile")
    missing = [d.asm_name for d in a.macs_per_pe if d not in chip.energy.mac_pj]
    if missing:
        raise ConfigError(f"{source}: energy.mac_pj: no energy for {', '.join(missing)} "
                          f"(core.array.macs_per_pe lists it)")
    classes = set(VECTOR_CLASSES)
    for name in ("op_cycles", "row_cycles", "latency_cycles", "warp_op_cycles",
                 "warp_row_cycles"):
        table = getattr(core.vector, name)
        unknown = sorted(set(table) - classes)
        if unknown:
            raise ConfigError(f"{source}: core.vector.{name}.{unknown[0]}: unknown op class "
                              f"(expected one of: {', '.join(sorted(classes))})")
        negative = [c for c, v in table.items() if not v >= 0]
        if negative:
            raise ConfigError(f"{source}: core.vector.{name}.{negative[0]}: must be >= 0")
    v = core.vector
    if v.group_lanes and (v.lanes % v.group_lanes or v.group_lanes > v.lanes):
        raise ConfigError(f"{source}: core.vector.group_lanes: {v.group_lanes} does not divide "
                          f"the {v.lanes} lanes")
    if chip.power.min_clock_hz > chip.clock_hz:
        raise ConfigError(f"{source}: power.min_clock_hz: above clock_hz")
    if chip.power.held_clock_hz > chip.clock_hz:
        raise ConfigError(f"{source}: power.held_clock_hz: above clock_hz")
    if core.dma.gemm_window > GEMM_WINDOW_MAX:
        raise ConfigError(f"{source}: core.dma.gemm_window: {core.dma.gemm_window} B is above "
                          f"the {GEMM_WINDOW_MAX // 1024} KiB a DMA's window operand holds")
