"""Fuzz targets for every input parser, shared by the tests here and ``benchmarks/fuzz_long.py``.

A ``Fuzzer`` is a hypothesis strategy of inputs plus a ``run`` that feeds one input to the
parser. ``run`` returns the error message (or ``None`` when the input was accepted) and
raises ``Bug`` when the parser misbehaves: any exception that is not the parser's own
``TesseraError``, an error that does not name its location, an input that takes longer than
``TIME_LIMIT_S``, nonsense that was accepted, or an accepted value that is not sane.

Inputs start from real files (chip and system presets, model presets and Hugging Face
configs, the bundled studies, ``examples/*.s``) and are mutated at the byte, line and field
level; pure random text is fuzzed too.
"""

from __future__ import annotations

import atexit
import copy
import dataclasses
import json
import math
import re
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml
from hypothesis import strategies as st

from assembler import AsmError, assemble, assemble_file
from experiments.sweep.spec import MAX_POINTS, SweepError, load_sweep, point_id
from hardware.chips import ConfigError, chip_from_dict, chip_to_dict, load_chip
from hardware.systems import load_system
from isa.binary import read_binary, write_binary
from isa.errors import DecodeError
from mapper.model import ModelError, load_model

ROOT = Path(__file__).resolve().parents[2]
TIME_LIMIT_S = 10.0
_WORK = Path(tempfile.mkdtemp(prefix="tessera-fuzz-"))
atexit.register(shutil.rmtree, _WORK, True)


class Bug(AssertionError):
    """The parser did something other than accept a sane value or raise its own error."""


@dataclass(frozen=True)
class Case:
    data: object  # text, bytes, or (for includes) a dict of file name -> text
    must_fail: bool = False  # the mutation made the input certainly invalid
    why: str = "random"  # the mutation, to make a failure readable


@dataclass(frozen=True)
class Fuzzer:
    name: str
    cases: st.SearchStrategy[Case]
    run: Callable[[Case], str | None]


# ---- seeds ----------------------------------------------------------------------------------

def _texts(folder: str, pattern: str) -> list[str]:
    return [p.read_text() for p in sorted((ROOT / folder).glob(pattern))]


EXAMPLES = _texts("examples", "*.s")
CHIPS = _texts("hardware/presets/chips", "*.yaml")
SYSTEMS = _texts("hardware/presets/systems", "*.yaml")
MODELS = _texts("mapper/presets", "*.yaml")
HF_CONFIGS = _texts("tests/mapper/data", "*.json")
STUDIES = _texts("experiments/studies", "*.yaml")

# keys each Hugging Face mapper reads (a bad value in any other key is ignored, rightly)
HF_READ = {
    "gpt2": ("n_embd", "n_layer", "n_head", "n_inner", "vocab_size", "n_positions",
             "layer_norm_epsilon"),
    "llama": ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
              "intermediate_size", "vocab_size", "max_position_embeddings", "rope_theta",
              "rms_norm_eps", "head_dim", "num_local_experts", "num_experts_per_tok"),
    "bert": ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
             "vocab_size", "max_position_embeddings", "layer_norm_eps"),
}
HF_READ["mistral"] = HF_READ["mixtral"] = HF_READ["qwen2"] = HF_READ["llama"]
HF_READ["mistral"] = HF_READ["llama"] + ("sliding_window",)
HF_READ["qwen3"] = HF_READ["qwen3_moe"] = HF_READ["llama"] + ("num_experts",
                                                             "moe_intermediate_size")
HF_READ["deepseek_v3"] = HF_READ["deepseek_v2"] = tuple(  # MLA: kv heads = heads
    k for k in HF_READ["llama"] if k != "num_key_value_heads") + (
    "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim", "kv_lora_rank", "q_lora_rank",
    "n_routed_experts", "n_shared_experts", "moe_intermediate_size", "first_k_dense_replace",
    "num_nextn_predict_layers")

YAML_TOKENS = ["{", "}", "[", "]", ": ", "- ", "&a ", "*a", "!!python/object/apply:os.system ",
               "!!binary ", "? ", "|\n", ">\n", "'", '"', "\t", "#", "---\n", "...\n", "<<: ",
               "%YAML 1.1\n", "~", ".nan", ".inf", "-.inf", "1e999", "0x10", "0o7", "2001-13-45",
               "9" * 60, "\n  ", " GB/s", " MiB", " ns", " GHz", "-", "null", "true", "yes",
               "µs", "\\u0000", "\x00", "\ufeff", "[[[[[[[[", "{a: ", "kind: ", "dims: "]
JSON_TOKENS = ["{", "}", "[", "]", ",", ":", '"', "null", "true", "NaN", "Infinity", "-",
               "1e999", "9" * 60, '"model_type": ', '"llama"', '"gpt2"', '"bert"', "\\u", "\x00"]
ASM_TOKENS = ["sram[", "]", "hbm[", "acc[0]", ",", "+ a3", "0x", "1e9", "-", "(", ")", ".equ",
              ".macro", ".endm", ".include", '"', ":", "|", "=", "loop", "mm", "\n", "<<", "/ 0",
              "a9", "KiB", ".data hbm,", ".bf16", ".f32", ".zero", ".align", "nan", "inf", "\\x",
              "\t", "\r\n", "9" * 40, "1.5", "* 1.0", "(" * 30, ")" * 30, "-" * 30, "\\p"]
# values a field mutation writes: wrong types, signs, magnitudes and units
WEIRD = [None, True, False, 0, -1, -2.5, 0.5, 1, 3, 2**31, 2**64, 10**30, 10**400, 1e308,
         float("nan"), float("inf"), float("-inf"), "", "banana", "12 parsecs", "-3 GB/s",
         "1e999 B", "1.5 GHz", "64 KiB", "0 s", "nan", "1 GB/s", [], [1, 2], [[1]], {},
         {"a": 1}, "ring", "os", "int8", "x" * 300, "edge", "../edge.yaml", "/"]
# values certainly invalid for a numeric field
BAD_NUMBERS = [-1, -2.5, "banana", "12 parsecs", [1], {"a": 1}, True, float("nan"),
               float("inf"), None, 10**400]


# ---- mutations ------------------------------------------------------------------------------

@st.composite
def mutated_text(draw: st.DrawFn, seeds: list[str], tokens: list[str]) -> Case:
    """A seed with 1-6 character-, token- or line-level edits."""
    text = draw(st.sampled_from(seeds))
    ops = []
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["delete", "insert", "token", "swap", "dup-line",
                                   "drop-line", "flip", "indent"]))
        ops.append(op)
        pos = draw(st.integers(0, len(text)))
        lines = text.split("\n")
        row = draw(st.integers(0, len(lines) - 1))
        if op == "delete":
            text = text[:pos] + text[pos + draw(st.integers(1, 12)):]
        elif op == "insert":
            text = text[:pos] + draw(st.text(max_size=8)) + text[pos:]
        elif op == "token":
            text = text[:pos] + draw(st.sampled_from(tokens)) + text[pos:]
        elif op == "swap":
            a, b = sorted((pos, draw(st.integers(0, len(text)))))
            text = text[:a] + text[b:] + text[a:b]
        elif op == "dup-line":
            text = "\n".join(lines[:row + 1] + lines[row:])
        elif op == "drop-line":
            text = "\n".join(lines[:row] + lines[row + 1:])
        elif op == "flip" and text:
            i = min(pos, len(text) - 1)
            text = text[:i] + chr(ord(text[i]) ^ (1 << draw(st.integers(0, 6)))) + text[i + 1:]
        else:
            lines[row] = " " * draw(st.integers(0, 5)) + lines[row].lstrip()
            text = "\n".join(lines)
    return Case(text, why="text: " + ", ".join(ops))


def _nodes(doc: object, path: tuple = ()) -> Iterator[tuple[tuple, object]]:
    yield path, doc
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _nodes(v, (*path, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _nodes(v, (*path, i))


def _set(doc: object, path: tuple, value: object, delete: bool = False) -> object:
    if not path:
        return value
    parent = doc
    for p in path[:-1]:
        parent = parent[p]  # type: ignore[index]
    if delete:
        del parent[path[-1]]  # type: ignore[union-attr]
    else:
        parent[path[-1]] = value  # type: ignore[index]
    return doc


_UNIT_NUMBER = re.compile(r"^\s*[-+]?(\d|\.\d)")


def _numeric(v: object) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) or \
        (isinstance(v, str) and bool(_UNIT_NUMBER.match(v)))


@st.composite
def mutated_doc(draw: st.DrawFn, seeds: list[str], load: Callable[[str], object]) -> object:
    """A seed document with 1-3 field-level edits: delete, replace, add, retype."""
    doc = load(draw(st.sampled_from(seeds)))
    ops = []
    for _ in range(draw(st.integers(1, 3))):
        path, node = draw(st.sampled_from(list(_nodes(doc))))
        op = draw(st.sampled_from(["delete", "replace", "replace", "add", "wrap"]))
        if op == "delete" and path:
            doc = _set(doc, path, None, delete=True)
        elif op == "add" and isinstance(node, dict):
            node[draw(st.sampled_from(["bogus", "rows", "name", "1", "chips"]))] = \
                copy.deepcopy(draw(st.sampled_from(WEIRD)))
        elif op == "wrap":
            doc = _set(doc, path, [node] if draw(st.booleans()) else {"x": node})
        else:
            op = "replace"
            doc = _set(doc, path, copy.deepcopy(draw(st.sampled_from(WEIRD))))
        ops.append(f"{op} {'.'.join(map(str, path)) or 'top'}")
    return doc, ", ".join(ops)


@st.composite
def invalid_field(draw: st.DrawFn, seeds: list[str], load: Callable[[str], object],
                  numeric: Callable[[tuple, object], bool], unknown_ok: Callable[[tuple], bool]
                  ) -> tuple[object, str]:
    """A seed with one edit that makes it certainly invalid: a bad value in a numeric field
    (``numeric(path, value)`` picks the fields the parser must check) or an unknown key."""
    doc = load(draw(st.sampled_from(seeds)))
    nodes = list(_nodes(doc))
    leaves = [p for p, v in nodes if p and numeric(p, v)]
    maps = [p for p, v in nodes if isinstance(v, dict) and not unknown_ok(p)]
    if leaves and (not maps or draw(st.booleans())):
        path = draw(st.sampled_from(leaves))
        value = copy.deepcopy(draw(st.sampled_from(BAD_NUMBERS)))
        return _set(doc, path, value), f"invalid {'.'.join(map(str, path))} = {value!r}"
    path = draw(st.sampled_from(maps))
    _set(doc, (*path, "bogus_field"), 1)
    return doc, f"unknown field {'.'.join(map(str, (*path, 'bogus_field')))}"


def _dump_yaml(doc_why: tuple[object, str], must_fail: bool = False) -> Case:
    doc, why = doc_why
    return Case(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), must_fail, why)


def _dump_json(doc_why: tuple[object, str], must_fail: bool = False) -> Case:
    doc, why = doc_why
    return Case(json.dumps(doc), must_fail, why)


def _random_text() -> st.SearchStrategy[Case]:
    return st.text(max_size=300).map(lambda t: Case(t, why="random text"))


def _yaml_cases(seeds: list[str], numeric: Callable[[tuple, object], bool],
                unknown_ok: Callable[[tuple], bool] = lambda p: False) -> st.SearchStrategy:
    return st.one_of(
        mutated_text(seeds, YAML_TOKENS),
        mutated_doc(seeds, yaml.safe_load).map(_dump_yaml),
        invalid_field(seeds, yaml.safe_load, numeric, unknown_ok).map(
            lambda d: _dump_yaml(d, True)),
        _random_text(),
    )


# ---- running one input ----------------------------------------------------------------------

@contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    def expire(signum: int, frame: object) -> None:
        raise Bug(f"no answer within {seconds:g} s (a hang?)")
    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _write(name: str, data: str | bytes) -> Path:
    path = _WORK / name
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_bytes(data.encode("utf-8", "surrogatepass"))
    return path


def _attempt(case: Case, call: Callable[[], object], error: type[Exception], where: str,
             sane: Callable[[object], None], one_line: bool = True) -> str | None:
    """Run ``call``; the message of its ``error``, or None when it accepted a sane value."""
    try:
        with _time_limit(TIME_LIMIT_S):
            value = call()
    except error as exc:
        msg = str(exc)
        if not msg.startswith(f"{where}:") or not msg[len(where) + 1:].strip():
            raise Bug(f"error without its location '{where}:' ({case.why}): {msg!r}") from exc
        if one_line and "\n" in msg:
            raise Bug(f"error of more than one line ({case.why}): {msg!r}") from exc
        return msg
    except Bug:
        raise
    except Exception as exc:  # noqa: BLE001 - the point: nothing else may escape
        raise Bug(f"{type(exc).__name__} escaped the parser ({case.why}): {exc}") from exc
    if case.must_fail:
        raise Bug(f"accepted nonsense ({case.why})")
    sane(value)
    return None


def _finite_non_negative(value: object, where: str = "") -> None:
    if dataclasses.is_dataclass(value):
        for f in dataclasses.fields(value):
            _finite_non_negative(getattr(value, f.name), f"{where}.{f.name}")
    elif isinstance(value, dict):
        for k, v in value.items():
            _finite_non_negative(v, f"{where}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _finite_non_negative(v, f"{where}[{i}]")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        if not (math.isfinite(value) and value >= 0):
            raise Bug(f"accepted {where} = {value!r}")


# ---- the parsers ----------------------------------------------------------------------------

def run_asm(case: Case) -> str | None:
    def sane(program: object) -> None:
        if read_binary(write_binary(program)) != program:  # type: ignore[arg-type]
            raise Bug("an assembled program does not survive its binary round trip")
    try:
        with _time_limit(TIME_LIMIT_S):
            program = assemble(str(case.data), "fuzz.s")
    except AsmError as exc:
        for d in exc.diagnostics:
            if d.file != "fuzz.s" or d.line < 1 or d.col < 1 or not d.message:
                raise Bug(f"diagnostic without a location ({case.why}): {d!r}") from exc
        return exc.diagnostics[0].message
    except Bug:
        raise
    except Exception as exc:  # noqa: BLE001
        raise Bug(f"{type(exc).__name__} escaped the assembler ({case.why}): {exc}") from exc
    if case.must_fail:
        raise Bug(f"accepted nonsense ({case.why})")
    sane(program)
    return None


@st.composite
def _asm_extremes(draw: st.DrawFn) -> Case:
    """Expressions at the limits: deep nesting, long chains, huge literals, float mixing."""
    n = draw(st.integers(1, 3000))
    expr = draw(st.sampled_from([
        "-" * n + "1", "+".join(["1"] * n), "(" * n + "1" + ")" * n, "9" * n,
        "1" + " * (1 << 128)" * min(n, 60) + " * 1.0", f"{'9' * n}.5e3",
        "1.0 / " + "(1 << 128) * " * min(n, 60) + "1",
    ]))
    directive = draw(st.sampled_from([".equ X, {}", ".data hbm, 0\n.f32 {}",
                                      ".data hbm, 0\n.i32 {}", "sem.wait mx, {}",
                                      "v.scale sram[0], sram[0], 1, 1, bf16, bf16, {}"]))
    return Case(directive.format(expr), why=f"extreme expression ({len(expr)} chars)")


@st.composite
def _asm_constant_chain(draw: st.DrawFn) -> Case:
    """Constants defined through each other: long chains and repeated squaring."""
    n = draw(st.integers(1, 1200))
    op = draw(st.sampled_from(["C{i} * C{i}", "C{i} + 1", "C{i} << 8"]))
    lines = [".equ C0, 3"] + [f".equ C{i + 1}, " + op.format(i=i) for i in range(n)]
    if draw(st.booleans()):
        lines.reverse()
    return Case("\n".join(lines) + f"\nsem.wait mx, C{n}\n", why=f"constant chain of {n}")


@st.composite
def _asm_macro_bomb(draw: st.DrawFn) -> Case:
    """Macros that each invoke the previous one several times: exponential expansion."""
    # either small enough to assemble quickly or far past the preprocessor's line limit
    depth, width = draw(st.tuples(st.integers(1, 15), st.integers(1, 12)).filter(
        lambda dw: dw[1] ** dw[0] <= 20_000 or dw[1] ** dw[0] > 10**7))
    lines = [".macro m0", "  nop", ".endm"]
    for i in range(1, depth + 1):
        lines += [f".macro m{i}"] + [f"  m{i - 1}"] * width + [".endm"]
    return Case("\n".join(lines + [f"m{depth}"]) + "\n",
                why=f"macro expansion {width}^{depth}")


ASM = Fuzzer("asm", st.one_of(
    mutated_text(EXAMPLES, ASM_TOKENS),
    st.lists(st.sampled_from(ASM_TOKENS + ["nop", "x", "1", " "]), max_size=30).map(
        lambda t: Case(" ".join(t), why="token soup")),
    _random_text(), _asm_extremes(), _asm_constant_chain(), _asm_macro_bomb(),
), run_asm)


@st.composite
def _include_graph(draw: st.DrawFn) -> Case:
    """Up to four files in two folders, each including others by relative path."""
    names = ["f0.s", "f1.s", "sub/f2.s", "sub/f3.s"][:draw(st.integers(1, 4))]
    files = {}
    for name in names:
        lines = []
        for _ in range(draw(st.integers(0, 4))):
            target = draw(st.sampled_from([*names, "missing.s", "sub"]))
            rel = Path(target) if "/" not in name else Path("..") / target
            lines.append(draw(st.sampled_from(["nop", f'.include "{rel.as_posix()}"'])))
        files[name] = "\n".join(lines) + "\n"
    return Case(files, why=f"include graph {files}")


def _cycle_from(files: dict[str, str], start: str) -> bool:
    def includes(name: str) -> list[str]:
        base = Path(name).parent
        out = []
        for m in re.finditer(r'\.include "([^"]*)"', files[name]):
            target = (base / m.group(1)).as_posix()
            parts: list[str] = []
            for part in target.split("/"):
                if part == "..":
                    parts.pop()
                elif part != ".":
                    parts.append(part)
            out.append("/".join(parts))
        return [t for t in out if t in files]

    def visit(name: str, stack: tuple[str, ...]) -> bool:
        return any(t in stack or visit(t, (*stack, t)) for t in includes(name))
    return visit(start, (start,))


def run_includes(case: Case) -> str | None:
    files: dict[str, str] = case.data  # type: ignore[assignment]
    root = Path(tempfile.mkdtemp(dir=_WORK))
    (root / "sub").mkdir()
    for name, text in files.items():
        (root / name).write_text(text)
    cycle = _cycle_from(files, "f0.s")
    try:
        with _time_limit(TIME_LIMIT_S):
            assemble_file(root / "f0.s")
    except AsmError as exc:
        if cycle != any("include cycle" in d.message for d in exc.diagnostics):
            raise Bug(f"include cycle {'missed' if cycle else 'invented'}: {exc}") from exc
        return exc.diagnostics[0].message
    except Bug:
        raise
    except Exception as exc:  # noqa: BLE001
        raise Bug(f"{type(exc).__name__} escaped the assembler ({case.why}): {exc}") from exc
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if cycle:
        raise Bug(f"include cycle accepted ({case.why})")
    return None


INCLUDES = Fuzzer("asm-include", _include_graph(), run_includes)


# binary programs ----------------------------------------------------------------------------

BINARIES = [write_binary(assemble(t, f"example{i}.s")) for i, t in enumerate(EXAMPLES)]


def _fix_crcs(blob: bytearray) -> None:
    """Recompute every section CRC the table can reach, so edits get past the CRC check."""
    import struct
    import zlib
    if len(blob) < 16:
        return
    count = struct.unpack_from("<H", blob, 6)[0]
    for i in range(min(count, (len(blob) - 16) // 24)):
        at = 16 + 24 * i
        off, size = struct.unpack_from("<QQ", blob, at + 8)
        if off + size <= len(blob):
            struct.pack_into("<I", blob, at + 4, zlib.crc32(bytes(blob[off:off + size])))


@st.composite
def _mutated_binary(draw: st.DrawFn) -> Case:
    import struct
    blob = bytearray(draw(st.sampled_from(BINARIES)))
    ops = []
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["truncate", "flip", "overwrite", "insert", "count", "size",
                                   "offset", "kind", "field"]))
        ops.append(op)
        pos = draw(st.integers(0, max(len(blob) - 1, 0)))
        if op == "truncate":
            del blob[pos:]
        elif op == "flip" and blob:
            blob[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=16))
            blob[pos:pos + len(chunk)] = chunk
        elif op == "insert":
            blob[pos:pos] = draw(st.binary(min_size=1, max_size=40))
        elif op == "count" and len(blob) >= 8:
            struct.pack_into("<H", blob, 6, draw(st.sampled_from([0, 1, 2, 4, 100, 65535])))
        elif op in ("size", "offset", "kind") and len(blob) >= 16 + 24 * 3:
            at = 16 + 24 * draw(st.integers(0, 2))
            value = draw(st.sampled_from([0, 1, 7, 31, 33, 2**31, 2**63, 2**64 - 1]))
            if op == "kind":
                struct.pack_into("<I", blob, at, value % 2**32)
            else:
                struct.pack_into("<Q", blob, at + (16 if op == "size" else 8), value)
        elif op == "field" and len(blob) >= 24:
            # an aligned 8-byte little-endian value somewhere after the header
            at = 16 + 8 * draw(st.integers(0, (len(blob) - 24) // 8))
            value = draw(st.sampled_from([0, 1, 2, 255, 2**32, 2**63, 2**64 - 1]))
            struct.pack_into("<Q", blob, at, value)
    if draw(st.booleans()):
        _fix_crcs(blob)
        ops.append("fixed CRCs")
    return Case(bytes(blob), why="binary: " + ", ".join(ops))


def run_binary(case: Case) -> str | None:
    def sane(program: object) -> None:
        if read_binary(write_binary(program)) != program:  # type: ignore[arg-type]
            raise Bug(f"an accepted binary does not round-trip ({case.why})")
    return _attempt(case, lambda: read_binary(case.data, "fuzz.bin"),  # type: ignore[arg-type]
                    DecodeError, "fuzz.bin", sane)


BINARY = Fuzzer("binary", st.one_of(
    _mutated_binary(),
    st.binary(max_size=200).map(lambda b: Case(b, why="random bytes")),
    st.binary(max_size=200).map(lambda b: Case(BINARIES[0][:16] + b, why="header + random")),
), run_binary)


# chip YAML ----------------------------------------------------------------------------------

def run_chip(case: Case) -> str | None:
    path = _write("fuzz-chip.yaml", str(case.data))

    def sane(chip: object) -> None:
        _finite_non_negative(chip, "chip")
        if chip_from_dict(chip_to_dict(chip)) != chip:  # type: ignore[arg-type]
            raise Bug(f"an accepted chip does not round-trip ({case.why})")
    return _attempt(case, lambda: load_chip(path), ConfigError, path.name, sane)


CHIP = Fuzzer("chip-yaml", _yaml_cases(CHIPS, lambda p, v: _numeric(v)), run_chip)


# system YAML --------------------------------------------------------------------------------

def run_system(case: Case) -> str | None:
    path = _write("fuzz-system.yaml", str(case.data))

    def sane(system: object) -> None:
        _finite_non_negative(system, "system")
        if len(system.chips) != system.topology.chips:  # type: ignore[attr-defined]
            raise Bug(f"chip count differs from the topology's ({case.why})")
        if not system.link.bandwidth > 0:  # type: ignore[attr-defined]
            raise Bug(f"accepted a link bandwidth of {system.link.bandwidth}")  # type: ignore
    return _attempt(case, lambda: load_system(path), ConfigError, path.name, sane)


SYSTEM = Fuzzer("system-yaml", _yaml_cases(
    SYSTEMS, lambda p, v: _numeric(v) and p[0] in ("topology", "link")), run_system)


# model YAML and config.json -----------------------------------------------------------------

def _sane_model(model: object) -> None:
    _finite_non_negative(model, "model")
    for name in ("hidden", "layers", "heads", "kv_heads", "head_dim", "ffn", "vocab", "max_seq"):
        if getattr(model, name) <= 0:
            raise Bug(f"accepted a model with {name} = {getattr(model, name)}")


def run_model(case: Case) -> str | None:
    path = _write("fuzz-model.yaml", str(case.data))
    return _attempt(case, lambda: load_model(path), ModelError, path.name, _sane_model)


MODEL = Fuzzer("model-yaml", _yaml_cases(MODELS, lambda p, v: _numeric(v)), run_model)


@st.composite
def _invalid_hf(draw: st.DrawFn) -> tuple[object, str]:
    doc = json.loads(draw(st.sampled_from(HF_CONFIGS)))
    keys = [k for k in HF_READ[doc["model_type"]] if k in doc and _numeric(doc[k]) and doc[k]]
    key = draw(st.sampled_from(keys))
    value = draw(st.sampled_from([v for v in BAD_NUMBERS if v is not None]))
    doc[key] = value
    return doc, f"invalid {key} = {value!r}"


def run_hf(case: Case) -> str | None:
    path = _write("config.json", str(case.data))
    return _attempt(case, lambda: load_model(path), ModelError, path.name, _sane_model)


HF = Fuzzer("hf-config-json", st.one_of(
    mutated_text(HF_CONFIGS, JSON_TOKENS),
    mutated_doc(HF_CONFIGS, json.loads).map(_dump_json),
    _invalid_hf().map(lambda d: _dump_json(d, True)),
    _random_text(),
), run_hf)


# sweep YAML ---------------------------------------------------------------------------------

def _sane_sweep(spec: object) -> None:
    if not (0 < spec.timeout < math.inf) or spec.size() > MAX_POINTS:  # type: ignore[attr-defined]
        raise Bug(f"accepted timeout {spec.timeout} / {spec.size()} points")  # type: ignore
    points = spec.points()  # type: ignore[attr-defined]
    if points:
        point_id(points[0])


@st.composite
def _invalid_sweep(draw: st.DrawFn) -> tuple[object, str]:
    doc = yaml.safe_load(draw(st.sampled_from(STUDIES)))
    field, value = draw(st.sampled_from([
        ("seed", "banana"), ("seed", 1.5), ("seed", [1]), ("seed", True), ("timeout", -1),
        ("timeout", 0), ("timeout", "banana"), ("timeout", float("nan")), ("timeout", None),
        ("mode", "banana"), ("mode", ["grid"]), ("objectives", 5), ("objectives", ["speed"]),
        ("objectives", "latency_s"), ("parameters", {}), ("parameters", []),
        ("parameters", {"bogus.x": [1]}), ("parameters", {"batch": []}),
        ("parameters", {"batch": {"log": [1, 10], "count": -1}}),
        ("parameters", {"batch": {"log": [1, 10], "count": 10**9}}),
        ("parameters", {"batch": {"linear": [1, "banana"], "count": 3}}),
        ("parameters", {"batch": {"linear": [1, float("nan")], "count": 3}}),
        ("parameters", {"batch": {"log": [0, 10], "count": 3}}),
        ("base", [1]), ("base", {1: 2}), ("base", {"bogus": 1}), ("bogus", 1),
        ("samples", "x"),
    ]))
    doc[field] = value
    if field == "samples":
        doc["mode"] = "random"
    return doc, f"invalid {field} = {value!r}"


def run_sweep(case: Case) -> str | None:
    path = _write("fuzz-sweep.yaml", str(case.data))
    return _attempt(case, lambda: load_sweep(path), SweepError, path.name, _sane_sweep)


SWEEP = Fuzzer("sweep-yaml", st.one_of(
    mutated_text(STUDIES, YAML_TOKENS),
    mutated_doc(STUDIES, yaml.safe_load).map(_dump_yaml),
    _invalid_sweep().map(lambda d: _dump_yaml(d, True)),
    _random_text(),
), run_sweep)


# ---- measured CSVs (tessera validate) -------------------------------------------------------

def _measured_seeds() -> list[str]:
    """A small file of every measured kind (cheap to predict), and each calibration file's
    header with a small row of its own."""
    from tests.experiments.test_validate import FIXTURES

    out = [text for _, text in FIXTURES.values()]
    for path in sorted((ROOT / "tests" / "data" / "measured").glob("*/*.csv")):
        lines = path.read_text().splitlines()
        out.append("\n".join([lines[0], min(lines[1:], key=len)]) + "\n")
    return out


MEASURED_SEEDS = _measured_seeds()
CSV_TOKENS = [",", ",,", "\n", "\"", "-1", "0", "nan", "inf", "1e308", "9" * 40, "True", "x",
              "bf16", "int8", "tf32", "prefill", "decode", "idle", "copy", "llama2-7b", "gpt9",
              "all_reduce", "M", "ms", " ", "\t", ";", "\ufeff"]


def _sane_validation(value: object) -> None:
    kind, df = value
    for i, r in df.iterrows():
        if r["skipped"]:
            if not str(r["skipped"]).startswith("row "):
                raise Bug(f"skip reason without its row: {r['skipped']!r}")
        elif not (r["predicted"] > 0 and math.isfinite(r["predicted"])):
            raise Bug(f"row {i + 2}: predicted {r['predicted']!r}")


def run_measured(case: Case) -> str | None:
    from experiments.measured_work import Target
    from experiments.validate import ValidateError, load_target, validate

    path = _write("fuzz-measured.csv", str(case.data))
    system = load_target("h200x2")
    target = Target("h200x2", system.chip, system.system, max_instructions=200_000)
    return _attempt(case, lambda: validate(target, path), ValidateError, str(path),
                    _sane_validation)


MEASURED = Fuzzer("measured-csv", st.one_of(
    mutated_text(MEASURED_SEEDS, CSV_TOKENS),
    _random_text(),
), run_measured)


FUZZERS = {f.name: f for f in (ASM, INCLUDES, BINARY, CHIP, SYSTEM, MODEL, HF, SWEEP,
                               MEASURED)}


# ---- serving trace files --------------------------------------------------------------------

TRACE_SEEDS = [
    "arrival_s,prompt_tokens,output_tokens,prefix_id,prefix_tokens\n0.0,40,4,a,32\n"
    "0.5,40,4,a,32\n1.0,20,3,,0\n",
    "prompt_tokens,output_tokens\n100,10\n200,20\n",
    '{"arrival_s": 0.0, "prompt_tokens": 12, "output_tokens": 3}\n'
    '{"arrival_s": 0.25, "prompt_tokens": 30, "output_tokens": 5, "prefix_id": "s", '
    '"prefix_tokens": 16}\n',
]


def _sane_trace(reqs: object) -> None:
    for r in reqs:  # type: ignore[attr-defined]
        if not (r.prompt >= 1 and r.output >= 1 and 0 <= r.arrival < math.inf
                and 0 <= r.prefix_len < r.prompt):
            raise Bug(f"accepted request {r!r}")


def run_trace(case: Case) -> str | None:
    from experiments.serve.workload import WorkloadError, read_trace

    text = str(case.data)
    suffix = ".jsonl" if text.lstrip().startswith("{") else ".csv"
    path = _write("fuzz-trace" + suffix, text)
    return _attempt(case, lambda: read_trace(path, rate=2.0), WorkloadError, str(path),
                    _sane_trace)


TRACE = Fuzzer("trace", st.one_of(
    mutated_text(TRACE_SEEDS, CSV_TOKENS + ['"', "{", "}", ":", "null", "1e400"]),
    _random_text(),
), run_trace)
FUZZERS["trace"] = TRACE
