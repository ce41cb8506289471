"""Load chip descriptions from YAML into the dataclasses of ``simulator.hardware``.

One generic converter walks the dataclass type hints, so every field is checked the same
way, and every error names the file and the dotted field: ``h100.yaml: core.array.rows:
must be a positive integer, got -4``. YAML is read with ``safe_load`` only.
"""

from __future__ import annotations

import dataclasses
import typing
from enum import Enum
from pathlib import Path

from isa.dtypes import DType
from isa.errors import TesseraError
from simulator import hardware as hw
from simulator.timing import VECTOR_CLASS
from simulator.units import UnitError, parse
from simulator.yamlfile import read_yaml

PRESETS = Path(__file__).parent / "presets"

# unit family of each field, by name (fields not listed are plain numbers)
UNITS = {
    "clock_hz": "frequency", "min_clock_hz": "frequency", "capacity": "bytes",
    "bandwidth": "bandwidth", "max_bandwidth": "bandwidth", "latency": "time",
    "store_latency": "time", "startup": "time",
    "kernel_gap": "time", "response_s": "time", "sustained_s": "time", "tdp_w": "power",
    "static_w": "power", "burst_bytes": "bytes", "bytes_per_cycle": "bytes",
}
FRACTIONS = {"efficiency"}  # must lie in (0, 1]
NON_NEGATIVE = {"tile_overhead_cycles", "kernel_gap", "response_s", "sustained_s", "tdp_w",
                "min_clock_hz", "max_bandwidth", "static_w", "latency", "store_latency", "startup",
                "pipeline_cycles",
                "l2.capacity", "l2.bandwidth", "row_elems"}


class ConfigError(TesseraError):
    """A configuration file or value is wrong; the message names the file and field."""


def list_presets() -> list[str]:
    return sorted(p.stem for p in PRESETS.glob("*.yaml"))


def load_chip(name_or_path: str | Path) -> hw.ChipConfig:
    """A preset by name (``h100``) or a chip YAML file."""
    path = _resolve(name_or_path)
    return chip_from_dict(_read_yaml(path), path.name)


def _resolve(name_or_path: str | Path) -> Path:
    text = str(name_or_path)
    if "/" not in text and not text.endswith((".yaml", ".yml")):
        path = PRESETS / f"{text}.yaml"
        if text not in list_presets():
            from simulator.system import list_systems

            if text in list_systems():
                raise ConfigError(f"'{text}' is a system preset (several chips), not a chip: "
                                  f"use --system {text}")
            raise ConfigError(f"unknown chip preset '{text}' (presets: "
                              f"{', '.join(list_presets())}; or give a YAML file)")
        return path
    path = Path(text)
    try:
        found = path.is_file()
    except OSError as exc:  # e.g. a name too long for the file system
        raise ConfigError(f"{text[:80]}: cannot read ({exc.strerror})") from None
    if not found:
        raise ConfigError(f"{text}: no such chip file")
    return path


def _read_yaml(path: Path) -> dict:
    data = read_yaml(path, ConfigError)
    if not isinstance(data, dict):
        raise ConfigError(f"{path.name}: expected a mapping of chip fields at the top level")
    return data


def chip_from_dict(data: dict, source: str = "<dict>") -> hw.ChipConfig:
    chip = _convert(hw.ChipConfig, data, source, "")
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
        return _convert(hw.ChipConfig, data, source, "")
    return chip_from_dict(data, source)


def _convert(cls: type, data: object, source: str, path: str):
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: {path or 'top level'}: expected a mapping, got "
                          f"{type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in data if k not in fields]
    if unknown:
        raise ConfigError(f"{source}: {_join(path, str(unknown[0]))}: unknown field (expected "
                          f"one of: {', '.join(fields)})")
    kwargs = {}
    for name, f in fields.items():
        where = _join(path, name)
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{source}: {where}: missing required field")
            continue
        kwargs[name] = _value(hints[name], data[name], source, where, name)
    return cls(**kwargs)


def _value(tp: object, value: object, source: str, where: str, name: str):
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _convert(tp, value, source, where)  # type: ignore[arg-type]
    if origin is dict:
        key_t, val_t = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {where}: expected a mapping")
        return {_value(key_t, k, source, f"{where}.{k}", name): _value(val_t, v, source,
                                                                      f"{where}.{k}", name)
                for k, v in value.items()}
    if isinstance(tp, type) and issubclass(tp, DType):
        try:
            return DType.parse(str(value))
        except ValueError as exc:
            raise ConfigError(f"{source}: {where}: {exc}") from None
    if isinstance(tp, type) and issubclass(tp, Enum):
        for member in tp:  # type: ignore[attr-defined]
            if value in (member.value, member.name, str(member.name).lower()):
                return member
        allowed = ", ".join(str(m.value) for m in tp)  # type: ignore[attr-defined]
        raise ConfigError(f"{source}: {where}: expected one of {allowed}, got {value!r}")
    if tp in (int, float):
        return _number(tp, value, source, where, name)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: {where}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{source}: {where}: expected text, got {value!r}")
        return value
    raise ConfigError(f"{source}: {where}: unsupported field type {tp}")  # pragma: no cover


def _number(tp: type, value: object, source: str, where: str, name: str) -> float | int:
    try:
        x = parse(value, UNITS[name]) if name in UNITS else _plain(value)
    except UnitError as exc:
        raise ConfigError(f"{source}: {where}: {exc}") from None
    if x != x or x in (float("inf"), float("-inf")):
        raise ConfigError(f"{source}: {where}: must be finite, got {value!r}")
    if name in FRACTIONS and not 0 < x <= 1:
        raise ConfigError(f"{source}: {where}: must be in (0, 1], got {value!r}")
    if x < 0 or (x == 0 and name not in NON_NEGATIVE and where not in NON_NEGATIVE):
        kind = "a positive integer" if tp is int else "positive"
        raise ConfigError(f"{source}: {where}: must be {kind}, got {value!r}")
    if tp is int:
        if x != int(x):
            raise ConfigError(f"{source}: {where}: must be a whole number, got {value!r}")
        if x >= 2**63:
            raise ConfigError(f"{source}: {where}: must be below 2^63, got {value!r}")
        return int(x)
    return float(x)


def _plain(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UnitError(f"expected a number, got {value!r}")
    if isinstance(value, int) and value.bit_length() > 1000:
        raise UnitError(f"an integer of {value.bit_length()} bits is too large")
    return float(value)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


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
    classes = set(VECTOR_CLASS.values())
    for name in ("op_cycles", "row_cycles", "latency_cycles"):
        table = getattr(core.vector, name)
        unknown = sorted(set(table) - classes)
        if unknown:
            raise ConfigError(f"{source}: core.vector.{name}.{unknown[0]}: unknown op class "
                              f"(expected one of: {', '.join(sorted(classes))})")
        negative = [c for c, v in table.items() if not v >= 0]
        if negative:
            raise ConfigError(f"{source}: core.vector.{name}.{negative[0]}: must be >= 0")
    if chip.power.min_clock_hz > chip.clock_hz:
        raise ConfigError(f"{source}: power.min_clock_hz: above clock_hz")
