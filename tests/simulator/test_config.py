"""Chip YAML: presets load; every mistake is one line naming the file and the field."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hardware.chips import (
    PRESETS,
    ConfigError,
    chip_from_dict,
    chip_to_dict,
    list_presets,
    load_chip,
    with_overrides,
)
from hardware.units import UnitError, parse
from isa.dtypes import DType


@pytest.mark.parametrize("name", ["edge", "fpga", "tpuv4", "h100", "h200"])
def test_presets_load(name):
    assert name in list_presets()
    chip = load_chip(name)
    assert chip.name == name and chip.cores > 0


def test_derived_peaks_are_what_the_comments_say():
    tpu = load_chip("tpuv4").peak_macs_per_s[DType.BF16] * 2
    assert tpu == pytest.approx(8 * 128 * 128 * 2 * 1.05e9)
    h100 = load_chip("h100")
    assert h100.peak_macs_per_s[DType.BF16] * 2 * 1.83 / 1.98 == pytest.approx(989.5e12,
                                                                               rel=1e-3)


@pytest.mark.parametrize("text, family, value", [
    ("3.35 TB/s", "bandwidth", 3.35e12), ("50 MiB", "bytes", 50 * 2 ** 20),
    ("1.98 GHz", "frequency", 1.98e9), ("700 ns", "time", 7e-7), ("2 us", "time", 2e-6),
    ("0.5 kW", "power", 500.0), ("64", "bytes", 64.0), (128, "bytes", 128.0),
    ("0.3 pJ", "energy_pj", 0.3),
])
def test_units(text, family, value):
    assert parse(text, family) == pytest.approx(value)


@pytest.mark.parametrize("text, family", [("3 GHz", "bytes"), ("fast", "time"),
                                          ("1.5 TB", "bandwidth"), (True, "bytes")])
def test_unit_errors(text, family):
    with pytest.raises(UnitError):
        parse(text, family)


def base() -> dict:
    return chip_to_dict(load_chip("edge"))


@pytest.mark.parametrize("path, value, message", [
    ("core.array.rows", -4, "edge.yaml: core.array.rows: must be a positive integer, got -4"),
    ("core.array.rows", 2.5, "core.array.rows: must be a whole number"),
    ("hbm.efficiency", 1.5, "hbm.efficiency: must be in (0, 1], got 1.5"),
    ("hbm.bandwidth", "10 GHz", "hbm.bandwidth: unit 'GHz' is not a bandwidth unit"),
    ("core.array.dataflow", "diagonal", "core.array.dataflow: expected one of ws, os, is"),
    ("core.array.macs_per_pe", {"int7": 1}, "core.array.macs_per_pe.int7: unknown data type"),
    ("core.sram.bytes_per_cycle", 8, "cannot feed a 32x32 array (needs >= 128"),
    ("core.acc.capacity", 64, "smaller than one 32x32 fp32 tile"),
])
def test_field_errors_name_file_and_field(path, value, message):
    data = base()
    node = data
    *parents, leaf = path.split(".")
    for p in parents:
        node = node[p]
    node[leaf] = value
    with pytest.raises(ConfigError) as info:
        chip_from_dict(data, "edge.yaml")
    assert message in str(info.value) and "\n" not in str(info.value)


def test_unknown_and_missing_fields():
    data = base()
    data["core"]["array"]["colz"] = 3
    with pytest.raises(ConfigError, match=r"core.array.colz: unknown field \(expected one of: "
                                          r"rows, cols"):
        chip_from_dict(data, "x.yaml")
    data = base()
    del data["hbm"]["bandwidth"]
    with pytest.raises(ConfigError, match="x.yaml: hbm.bandwidth: missing required field"):
        chip_from_dict(data, "x.yaml")


def test_yaml_syntax_error_has_line_and_column(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("name: x\ncores: [1, 2\n")
    with pytest.raises(ConfigError, match=r"^bad.yaml:\d+:\d+: "):
        load_chip(f)


def test_unknown_preset_lists_presets():
    with pytest.raises(ConfigError, match="unknown chip preset 'h900' .*h100"):
        load_chip("h900")


def test_overrides():
    chip = with_overrides(load_chip("edge"), {"core.array.rows": 64, "hbm.bandwidth": "1 TB/s",
                                              "core.sram.bytes_per_cycle": 256})
    assert chip.core.array.rows == 64 and chip.hbm.bandwidth == 1e12
    with pytest.raises(ConfigError, match="unknown field 'core.array.depth'"):
        with_overrides(chip, {"core.array.depth": 3})


PRESET_TEXT = (PRESETS / "h100.yaml").read_text()


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_fuzzed_yaml_only_raises_config_error(tmp_path_factory, data):
    text = PRESET_TEXT
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(text)))
        op = data.draw(st.sampled_from(["del", "ins", "swap"]))
        if op == "del":
            text = text[:pos] + text[pos + data.draw(st.integers(1, 20)):]
        elif op == "ins":
            text = text[:pos] + data.draw(st.text(max_size=8)) + text[pos:]
        else:
            text = text[:pos] + data.draw(st.sampled_from(
                ["-1", "x", "{", "]", ": ", "\n  ", "1e999", "null", "'", "&a", "*a"])) + text[pos:]
    f = tmp_path_factory.mktemp("fuzz") / "chip.yaml"
    f.write_text(text)
    try:
        load_chip(f)
    except ConfigError as exc:
        assert "chip.yaml" in str(exc)
