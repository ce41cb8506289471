"""Numbers with units in configuration files: "3.35 TB/s", "50 MiB", "1.98 GHz", "700 W".

Each field declares a unit family; a value may be a plain number (already in the SI base
unit) or a string with a unit of that family. Decimal prefixes k M G T are powers of 1000,
binary prefixes Ki Mi Gi Ti powers of 1024.
"""

from __future__ import annotations

import re

_PREFIX = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15,
           "Ki": 1024.0, "Mi": 1024.0 ** 2, "Gi": 1024.0 ** 3, "Ti": 1024.0 ** 4,
           "m": 1e-3, "u": 1e-6, "µ": 1e-6, "n": 1e-9, "p": 1e-12}
FAMILIES = {
    "bytes": ("B",),
    "bandwidth": ("B/s",),
    "frequency": ("Hz",),
    "time": ("s",),
    "power": ("W",),
    "energy_pj": ("pJ",),
    "number": (),  # a plain number, no unit
}
_NUM = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([A-Za-zµ/]*)\s*$")


class UnitError(ValueError):
    """A value is not a number of the expected unit family."""


def parse(value: object, family: str) -> float:
    """The value in the family's base unit (bytes, bytes/s, Hz, s, W, pJ)."""
    if isinstance(value, bool):
        raise UnitError(f"expected a number, got {value!r}")
    if isinstance(value, int) and value.bit_length() > 1000:
        raise UnitError(f"an integer of {value.bit_length()} bits is too large")
    if isinstance(value, (int, float)):
        return float(value)
    if not isinstance(value, str):
        raise UnitError(f"expected a number or a string with a unit, got {value!r}")
    m = _NUM.match(value)
    if not m:
        raise UnitError(f"cannot read {value!r} as a number with a unit")
    number, unit = float(m.group(1)), m.group(2)
    if not unit:
        return number
    if family == "energy_pj":
        scale = {"pJ": 1.0, "fJ": 1e-3, "nJ": 1e3}.get(unit)
        if scale is None:
            raise UnitError(f"unit '{unit}' is not an energy (expected pJ, fJ or nJ)")
        return number * scale
    for base in FAMILIES[family]:
        if unit.endswith(base) and unit[:-len(base)] in _PREFIX:
            return number * _PREFIX[unit[:-len(base)]]
    expected = ", ".join(f"e.g. 1.5 G{b}" for b in FAMILIES[family])
    raise UnitError(f"unit '{unit}' is not a {family.replace('_pj', '')} unit ({expected})")
