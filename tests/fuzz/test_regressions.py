"""The concrete inputs the fuzzers found, each once raising something other than the parser's
own located error (or accepted when it should not have been)."""

from __future__ import annotations

from pathlib import Path

import pytest

from assembler import AsmError, assemble, assemble_file
from experiments.sweep.spec import SweepError, load_sweep
from hardware.chips import ConfigError, load_chip
from hardware.systems import load_system
from mapper.model import ModelError, load_model

EDGE = (Path(__file__).parents[2] / "hardware/presets/chips/edge.yaml").read_text()
MODEL = "name: m\nhidden: 64\nlayers: 1\nheads: 4\nffn: 128\nvocab: 100\nmax_seq: 32\n"
SYSTEM = "chip: edge\ntopology: {kind: ring, dims: [2]}\nlink: {bandwidth: 1 GB/s}\n"
SWEEP = "parameters: {batch: [1]}\n"


@pytest.mark.parametrize("text, message", [
    (".equ X, " + "-" * 3000 + "1", "nested too deeply"),
    (".equ X, " + "+".join(["1"] * 3000), "nested too deeply"),
    (".equ X, " + "9" * 5000, "5000 digits is out of range"),
    (".data hbm, 0\n.f32 " + "(1 << 128) * " * 9 + "1.0", "too large for a float"),
    ("v.scale sram[0], sram[0], 1, 1, bf16, bf16, " + "(1 << 128) * " * 9 + "1",
     "more than 512 bits"),
    ("\n".join([".equ C0, 3"] + [f".equ C{i + 1}, C{i} * C{i}" for i in range(40)]),
     "does not fit 64 bits"),
    (".equ X, 9999999999999999999", "does not fit 64 bits"),
    (".data hbm, -1\n.i8 1", "data address -1 out of range"),
    (".data hbm, (1 << 63) - 1\n.i8 1, 2\ny:", "beyond address 2^63-1"),
    ("\n".join([".macro m0", "nop", ".endm"] + [
        line for i in range(1, 16) for line in [f".macro m{i}", *[f"m{i - 1}"] * 12, ".endm"]]
        + ["m15"]), "expansion exceeds 1,000,000 lines"),
])
def test_assembly(text, message):
    with pytest.raises(AsmError) as info:
        assemble(text + "\n", "r.s")
    assert message in str(info.value) and info.value.diagnostics[0].line >= 1


def test_include_cycle_through_a_subfolder(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "main.s").write_text('.include "lib/a.s"\n')
    (tmp_path / "lib" / "a.s").write_text('nop\n.include "../main.s"\n')
    with pytest.raises(AsmError, match=r"include cycle: main.s -> a.s -> main.s"):
        assemble_file(tmp_path / "main.s")


@pytest.mark.parametrize("text, message", [
    ("[" * 5000, "nested too deeply"),
    ("x: 2001-13-45", "invalid YAML value (month must be in 1..12)"),
    ("x: " + "1" * 5000, "invalid YAML value (Exceeds the limit"),
    (EDGE.replace("cores: 4", "cores: " + "9" * 400), "cores: an integer of"),
    (EDGE.replace("cores: 4", "cores: 1.0e+300"), "cores: must be below 2^63"),
    (EDGE.replace("    lanes: 32", "    lanes: 32\n    op_cycles: {simpel: 1.0}"),
     "core.vector.op_cycles.simpel: unknown op class"),
    (EDGE.replace("    lanes: 32", "    lanes: 32\n    group_lanes: 24"),
     "core.vector.group_lanes: 24 does not divide the 32 lanes"),
    (EDGE.replace("    lanes: 32", "    lanes: 32\n    warp_op_cycles: {sofmax: 5}"),
     "core.vector.warp_op_cycles.sofmax: unknown op class"),
    (EDGE + "\ncopy_engine: {bandwidth: 1 TB/s, min_bytes: -5}\n",
     "copy_engine.min_bytes: must be a non-negative integer"),
    (EDGE + "\ncopy_engine: {bandwidth: 2 furlongs}\n",
     "copy_engine.bandwidth: unit 'furlongs' is not a bandwidth unit"),
    (EDGE.replace("    burst_bytes: 64", "    burst_bytes: 64\n    gemm_window: -1 KiB"),
     "core.dma.gemm_window: must be a non-negative integer"),
    (EDGE.replace("    burst_bytes: 64", "    burst_bytes: 64\n    gemm_window: 100 MiB"),
     "core.dma.gemm_window: 104857600 B is above the 65535 KiB a DMA's window operand"),
])
def test_chip_yaml(tmp_path, text, message):
    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(ConfigError, match=r"^c\.yaml") as info:
        load_chip(tmp_path / "c.yaml")
    assert message in str(info.value)


def test_chip_name_too_long_for_the_file_system():
    with pytest.raises(ConfigError, match="cannot read"):
        load_chip("a" * 5000 + ".yaml")


@pytest.mark.parametrize("text, message", [
    (SYSTEM.replace("1 GB/s", ".nan"), "link.bandwidth: must be finite"),
    (SYSTEM.replace("1 GB/s", ".inf"), "link.bandwidth: must be finite"),
    (SYSTEM.replace("1 GB/s}", "1 GB/s, latncy: 1 us}"), "link.latncy: unknown field"),
    (SYSTEM.replace("dims: [2]}", "dims: [2], size: 3}"), "topology.size: unknown field"),
    (SYSTEM.replace("[2]", "[1000000000]"), "more than 65,536"),
    (SYSTEM.replace("edge", "a" * 5000 + ".yaml"), "chip: "),
    (SYSTEM.replace("edge", "nosuchchip"), "chip: unknown chip preset 'nosuchchip'"),
])
def test_system_yaml(tmp_path, text, message):
    (tmp_path / "s.yaml").write_text(text)
    with pytest.raises(ConfigError, match=r"^s\.yaml") as info:
        load_system(tmp_path / "s.yaml")
    assert message in str(info.value)


@pytest.mark.parametrize("name, text, message", [
    ("m.yaml", MODEL.replace("heads: 4", "heads: 0"), "heads: must be positive"),
    ("m.yaml", MODEL.replace("heads: 4", "heads: 128"), "head_dim: must be positive"),
    ("m.yaml", MODEL + "rope_theta: " + "9" * 400, "rope_theta: an integer of 1329 bits"),
    ("m.yaml", MODEL.replace("vocab: 100", "vocab: " + "9" * 30), "vocab: must be below 2^63"),
    ("m.yaml", MODEL + "dtype: banana", "dtype: unknown data type 'banana'"),
    ("config.json", "[" * 100000, "nested too deeply"),
    ("config.json", "1" * 5000, "invalid JSON value"),
    ("config.json", '{"model_type": []}', "model_type: unsupported"),
    ("config.json", '{"model_type": "gpt2", "n_embd": {}, "n_layer": 1, "n_head": 1, '
                    '"vocab_size": 1, "n_positions": 1}', "n_embd: expected a positive integer"),
    ("config.json", '{"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 1, '
                    '"num_attention_heads": 4, "intermediate_size": 128, "vocab_size": 10, '
                    '"max_position_embeddings": 32, "rope_theta": "banana"}',
     "rope_theta: expected a number, got 'banana'"),
])
def test_model_files(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(ModelError, match=rf"^{name}") as info:
        load_model(tmp_path / name)
    assert message in str(info.value)


@pytest.mark.parametrize("extra, message", [
    ("seed: x", "seed: expected an integer"),
    ("seed: 1.5", "seed: expected an integer"),
    ("timeout: -5", "timeout: expected a positive number"),
    ("timeout: .nan", "timeout: expected a positive number"),
    ("timeout: null", "timeout: expected a positive number"),
    ("objectives: 5", "objectives: expected a list"),
    ("base: {1: 2}", "base.1: unknown field"),
])
def test_sweep_yaml(tmp_path, extra, message):
    (tmp_path / "w.yaml").write_text(SWEEP + extra + "\n")
    with pytest.raises(SweepError, match=r"^w\.yaml") as info:
        load_sweep(tmp_path / "w.yaml")
    assert message in str(info.value)


def test_sweep_range_ends_must_be_finite(tmp_path):
    (tmp_path / "w.yaml").write_text("parameters: {batch: {linear: [1, .inf], count: 3}}\n")
    with pytest.raises(SweepError, match="not finite"):
        load_sweep(tmp_path / "w.yaml")


@pytest.mark.parametrize("values", ["&a [1, *a]", "[[1, [2]]]", "[{a: 1}]"])
def test_sweep_values_are_plain_or_tied_lists(tmp_path, values):
    # a self-nesting YAML alias used to reach json.dumps and escape as a ValueError
    (tmp_path / "w.yaml").write_text(f"parameters: {{batch: {values}}}\n")
    with pytest.raises(SweepError, match=r"^w\.yaml: parameters\.batch\[\d\]: expected a value"):
        load_sweep(tmp_path / "w.yaml")
