"""No setting is parsed and ignored: every field of every preset is read by the model."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from hardware.chips import chip_to_dict, list_presets, load_chip
from hardware.systems import list_systems, load_system
from mapper.model import list_models, load_model

ROOT = Path(__file__).parents[2]
# where the fields are parsed, validated, written back or printed: reading there is not use
LOADERS = {"hardware/chips.py", "hardware/systems.py", "mapper/model.py",
           "experiments/commands/presets_cmd.py"}


def _code() -> str:
    files = [p for pkg in ("simulator", "mapper", "experiments") for p in
             (ROOT / pkg).rglob("*.py") if str(p.relative_to(ROOT)) not in LOADERS]
    return "\n".join(p.read_text() for p in files)


CODE = _code()


def _fields(obj: object, prefix: str = "") -> list[tuple[str, str]]:
    """(dotted path, attribute name) of every dataclass field under ``obj``."""
    out = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        out.append((prefix + f.name, f.name))
        if dataclasses.is_dataclass(value):
            out += _fields(value, f"{prefix}{f.name}.")
        elif isinstance(value, tuple) and value and dataclasses.is_dataclass(value[0]):
            out += _fields(value[0], f"{prefix}{f.name}[].")
    return out


def _read(attr: str) -> bool:
    return re.search(rf"\.{attr}\b", CODE) is not None


@pytest.mark.parametrize("name", list_presets())
def test_every_chip_field_is_read(name):
    chip = load_chip(name)
    assert chip_to_dict(chip)  # loads
    unread = [path for path, attr in _fields(chip) if not _read(attr)]
    assert unread == [], f"{name}: fields nothing reads: {unread}"


@pytest.mark.parametrize("name", list_systems())
def test_every_system_field_is_read(name):
    system = load_system(name)
    unread = [path for path, attr in _fields(system) if path.split(".")[0] != "chips"
              and not _read(attr)]
    assert unread == [], f"{name}: fields nothing reads: {unread}"


@pytest.mark.parametrize("name", list_models())
def test_every_model_field_is_read(name):
    model = load_model(name)
    unread = [path for path, attr in _fields(model) if not _read(attr)]
    assert unread == [], f"{name}: fields nothing reads: {unread}"


def test_every_collective_a_system_may_name_is_implemented():
    from hardware.system import COLLECTIVES
    from simulator.network.collectives import ALGORITHMS

    assert set(COLLECTIVES) == {*ALGORITHMS, "hierarchical"}
