"""One loader for every description file: chips, systems and models.

A dataclass is filled from plain data (YAML or JSON) by walking its type hints; what a
field accepts is in its metadata, written once beside the field:

    capacity: int = field(metadata=spec("bytes", help="bytes of SRAM per core"))

* ``unit``: the unit family (``hardware.units``): "50 MiB", "3.35 TB/s", "1.98 GHz";
* ``bounds``: ``positive`` (the default for numbers), ``non_negative`` or ``fraction``
  (in (0, 1]);
* ``help``: one line for documentation and listings.

Every error names the file and the dotted field, as the one line the CLI prints. Preset
name-or-path resolution is written here once too.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from enum import Enum
from pathlib import Path

from hardware.units import UnitError, parse
from isa.dtypes import DType
from isa.errors import TesseraError

BOUNDS = ("positive", "non_negative", "fraction")
MAX_VALUE = 1e30  # larger numbers in a description are mistakes, not hardware


def spec(unit: str | None = None, bounds: str = "positive", help: str = "") -> dict:  # noqa: A002
    """Field metadata: its unit family, bounds and a line of help."""
    assert bounds in BOUNDS, bounds
    return {"unit": unit, "bounds": bounds, "help": help}


def resolve(name_or_path: str | Path, folder: Path, what: str, error: type[TesseraError],
            suffixes: tuple[str, ...] = (".yaml", ".yml"),
            other: dict[str, str] | None = None) -> Path:
    """A preset name (a file of ``folder``) or a path. ``other``: names that are presets of
    another kind, with the hint to give (``{"h100x4": "use --system h100x4"}``)."""
    text = str(name_or_path)
    if "/" not in text and not text.endswith(suffixes):
        names = sorted(p.stem for p in folder.glob("*.yaml"))
        if text in names:
            return folder / f"{text}.yaml"
        if other and text in other:
            raise error(other[text])
        raise error(f"unknown {what} preset '{text}' (presets: {', '.join(names)}; or give "
                    f"a file)")
    path = Path(text)
    try:
        found = path.is_file()
    except OSError as exc:  # e.g. a name too long for the file system
        raise error(f"{text[:80]}: cannot read ({exc.strerror})") from None
    if not found:
        raise error(f"{text}: no such {what} file")
    return path


def from_dict(cls: type, data: object, source: str, error: type[TesseraError],
              path: str = "", moved: dict[str, str] | None = None):  # noqa: ANN201
    """An instance of dataclass ``cls`` from ``data``, every field checked by its type and
    metadata. ``moved``: dotted fields that no longer exist, with where they went."""
    if not isinstance(data, dict):
        raise error(f"{source}: {path or 'top level'}: expected a mapping, got "
                    f"{type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in data if k not in fields]
    for k in unknown:
        if moved and join(path, str(k)) in moved:
            raise error(f"{source}: {join(path, str(k))}: {moved[join(path, str(k))]}")
    if unknown:
        raise error(f"{source}: {join(path, str(unknown[0]))}: unknown field (expected one of: "
                    f"{', '.join(fields)})")
    kwargs = {}
    for name, f in fields.items():
        where = join(path, name)
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise error(f"{source}: {where}: missing required field")
            continue
        kwargs[name] = _value(hints[name], data[name], source, where, f.metadata, error, moved)
    return cls(**kwargs)


def _value(tp: object, value: object, source: str, where: str, meta: typing.Mapping,
           error: type[TesseraError], moved: dict[str, str] | None):  # noqa: ANN202
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, source, error, where, moved)  # type: ignore[arg-type]
    if origin is dict:
        key_t, val_t = typing.get_args(tp)
        if not isinstance(value, dict):
            raise error(f"{source}: {where}: expected a mapping")
        return {_value(key_t, k, source, f"{where}.{k}", meta, error, moved):
                _value(val_t, v, source, f"{where}.{k}", meta, error, moved)
                for k, v in value.items()}
    if origin is tuple:
        item_t = typing.get_args(tp)[0]
        if not isinstance(value, (list, tuple)):
            raise error(f"{source}: {where}: expected a list")
        return tuple(_value(item_t, v, source, f"{where}[{i}]", meta, error, moved)
                     for i, v in enumerate(value))
    if isinstance(tp, type) and issubclass(tp, DType):
        try:
            return DType.parse(str(value))
        except ValueError as exc:
            raise error(f"{source}: {where}: {exc}") from None
    if isinstance(tp, type) and issubclass(tp, Enum):
        for member in tp:  # type: ignore[attr-defined]
            if value in (member.value, member.name, str(member.name).lower()):
                return member
        allowed = ", ".join(str(m.value) for m in tp)  # type: ignore[attr-defined]
        raise error(f"{source}: {where}: expected one of {allowed}, got {value!r}")
    if tp in (int, float):
        return _number(tp, value, source, where, meta, error)  # type: ignore[arg-type]
    if tp is bool:
        if not isinstance(value, bool):
            raise error(f"{source}: {where}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise error(f"{source}: {where}: expected text, got {value!r}")
        return value
    raise error(f"{source}: {where}: unsupported field type {tp}")  # pragma: no cover


def _number(tp: type, value: object, source: str, where: str, meta: typing.Mapping,
            error: type[TesseraError]) -> float | int:
    unit, bounds = meta.get("unit"), meta.get("bounds", "positive")
    try:
        x = parse(value, unit) if unit else plain_number(value)
    except UnitError as exc:
        raise error(f"{source}: {where}: {exc}") from None
    if not math.isfinite(x):
        raise error(f"{source}: {where}: must be finite, got {_show(value)}")
    if tp is int and x >= 2**63:
        raise error(f"{source}: {where}: must be below 2^63, got {_show(value)}")
    if abs(x) > MAX_VALUE:
        raise error(f"{source}: {where}: must be below 1e30, got {_show(value)}")
    if bounds == "fraction" and not 0 < x <= 1:
        raise error(f"{source}: {where}: must be in (0, 1], got {value!r}")
    if x < 0 or (x == 0 and bounds == "positive"):
        kind = ("a non-negative" if bounds == "non_negative" else "a positive") + (
            " integer" if tp is int else " number")
        raise error(f"{source}: {where}: must be {kind}, got {_show(value)}")
    if tp is int:
        if x != int(x):
            raise error(f"{source}: {where}: must be a whole number, got {value!r}")
        return int(x)
    return float(x)


def in_bounds(value: float, meta: typing.Mapping) -> bool:
    """Whether a field with metadata ``meta`` may hold ``value`` (what loading checks)."""
    try:
        _number(float, value, "", "", {**meta, "unit": None}, TesseraError)
    except TesseraError:
        return False
    return True


def plain_number(value: object) -> float:
    """A number without a unit (a bool or a huge integer is refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UnitError(f"expected a number, got {_show(value)}")
    if isinstance(value, int) and value.bit_length() > 1000:
        raise UnitError(f"an integer of {value.bit_length()} bits is too large")
    return float(value)


def _show(value: object) -> str:
    """A value for a message: a huge integer by its size, not its 4000 digits."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"an integer of {value.bit_length()} bits"
    return repr(value)


def join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name
