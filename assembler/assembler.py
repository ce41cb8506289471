"""Assemble text into a ``Program``: expand, parse, lay out, then encode every operand.

Operands are checked by the ISA table's own operand kinds, so a range or memory-space error
is the table's rule, stated once. Every error of the file is collected and raised together
as one ``AsmError``; nothing a user writes produces a Python traceback.
"""

from __future__ import annotations

import difflib
import struct
from dataclasses import dataclass, field
from pathlib import Path

from assembler.diagnostics import AsmError, Diagnostic, Origin, at
from assembler.expr import ExprError, evaluate, split_register
from assembler.parser import Expr, Operand, Statement, parse
from assembler.preprocess import expand
from isa.operands import F32, AReg, Choice, DTypeKind, Flags, Mem, MemRef, OperandError, Space
from isa.program import DataSegment, Instruction, Program
from isa.table import BY_MNEMONIC, OpSpec

SPACES = {"hbm": 0, "sram": 1, "acc": 2}
DATA = {".i8": ("<b", 1), ".i32": ("<i", 4), ".f32": ("<f", 4), ".fp16": ("<e", 2),
        ".bf16": (None, 2), ".bytes": ("<B", 1)}
DIRECTIVES = (".equ", ".text", ".data", ".zero", ".align", ".include", ".macro", ".endm",
              *DATA)


@dataclass
class _Section:
    space: int
    addr: int
    data: bytearray = field(default_factory=bytearray)


@dataclass
class _State:
    lines: list[tuple[str, Origin]]
    diags: list[Diagnostic] = field(default_factory=list)
    labels: dict[str, int] = field(default_factory=dict)
    constants: dict[str, Expr] = field(default_factory=dict)
    const_lines: dict[str, int] = field(default_factory=dict)
    const_values: dict[str, int] = field(default_factory=dict)
    data_labels: dict[str, int] = field(default_factory=dict)
    resolving: set[str] = field(default_factory=set)
    instrs: list[tuple[Statement, OpSpec]] = field(default_factory=list)
    sections: list[_Section] = field(default_factory=list)

    def origin(self, line: int) -> Origin:
        return self.lines[line - 1][1]

    def error(self, line: int, col: int, message: str) -> None:
        d = at(self.origin(line), col, message)
        if d not in self.diags:
            self.diags.append(d)


def assemble_file(path: str | Path) -> Program:
    p = Path(path)
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        why = getattr(exc, "strerror", None) or exc
        raise AsmError([Diagnostic(str(p), 0, 0, f"cannot read ({why})", "")]) from None
    return assemble(text, str(p))


def assemble(text: str, filename: str = "<input>") -> Program:
    exp = expand(text, filename, set(BY_MNEMONIC))
    st = _State(exp.lines)
    st.diags.extend(exp.problems)
    stmts, problems = parse("\n".join(code for code, _ in exp.lines))
    for p in problems:
        st.error(p.line, p.col, p.message)
    in_data = _layout(st, stmts)
    program = _encode(st, in_data)
    if st.diags:
        order = {id(d): i for i, d in enumerate(st.diags)}
        st.diags.sort(key=lambda d: (d.file != filename, d.file, d.line, order[id(d)]))
        raise AsmError(st.diags)
    return program


# ---- pass 1: labels, constants, sections ---------------------------------------------------

def _layout(st: _State, stmts: list[Statement]) -> list[tuple[Statement, _Section]]:
    section: _Section | None = None
    data_stmts: list[tuple[Statement, _Section]] = []
    for s in stmts:
        if s.label:
            _define_label(st, s, section)
        if s.kind == "instr":
            if section is not None:
                st.error(s.line, s.col, f"instruction '{s.name}' inside a .data section "
                                        f"(use .text first)")
                continue
            spec = BY_MNEMONIC.get(s.name)
            if spec is None:
                st.error(s.line, s.col, _unknown(s.name))
                continue
            st.instrs.append((s, spec))
        elif s.kind == "directive":
            section = _directive(st, s, section, data_stmts)
    return data_stmts


def _define_label(st: _State, s: Statement, section: _Section | None) -> None:
    name, col = s.label  # type: ignore[misc]
    if name in st.labels or name in st.constants or name in st.data_labels:
        st.error(s.line, col, f"duplicate label '{name}'")
    elif section is None:
        st.labels[name] = len(st.instrs)
    elif section.addr + len(section.data) >= 1 << 63:
        st.error(s.line, col, f"label '{name}' lies beyond address 2^63-1")
    else:
        st.data_labels[name] = section.addr + len(section.data)


def _directive(st: _State, s: Statement, section: _Section | None,
               data_stmts: list) -> _Section | None:
    name, ops = s.name, s.operands
    if name == ".equ":
        if len(ops) != 2 or ops[0].kind != "expr" or ops[0].value.op != "name":
            st.error(s.line, s.col, ".equ expects a name and a value: .equ NAME, expr")
        else:
            cname = ops[0].value.a
            if cname in st.constants or cname in st.labels:
                st.error(s.line, ops[0].col, f"duplicate definition of '{cname}'")
            elif ops[1].kind != "expr":
                st.error(s.line, ops[1].col, ".equ value must be an integer expression")
            else:
                st.constants[cname] = ops[1].value
                st.const_lines[cname] = s.line
        return section
    if name == ".text":
        return None
    if name == ".data":
        return _data_section(st, s)
    if name in DATA or name in (".zero", ".align"):
        if section is None:
            st.error(s.line, s.col, f"{name} outside a .data section")
            return section
        _data_directive(st, s, section)
        return section
    st.error(s.line, s.col, _unknown(name, DIRECTIVES, "directive"))
    return section


def _data_section(st: _State, s: Statement) -> _Section | None:
    ops = s.operands
    if len(ops) != 2 or ops[0].kind != "expr" or ops[0].value.op != "name":
        st.error(s.line, s.col, ".data expects a space and an address: .data hbm, 0x1000")
        return None
    space = ops[0].value.a
    if space not in SPACES:
        st.error(s.line, ops[0].col, f"unknown memory space '{space}' (expected hbm, sram, acc)")
        return None
    addr = _int(st, s.line, ops[1])
    if addr is not None and not 0 <= addr < 1 << 63:
        st.error(s.line, ops[1].col, f"data address {addr} out of range 0..2^63-1")
        addr = None
    sec = _Section(SPACES[space], addr if addr is not None else 0)
    st.sections.append(sec)
    return sec


def _data_directive(st: _State, s: Statement, sec: _Section) -> None:
    if s.name in (".zero", ".align"):
        n = _int(st, s.line, s.operands[0]) if len(s.operands) == 1 else None
        if n is None or n < 0 or n > 1 << 30 or (s.name == ".align" and n == 0):
            st.error(s.line, s.col, f"{s.name} expects one count between 1 and 2^30")
            return
        pad = n if s.name == ".zero" else -len(sec.data) % n
        sec.data.extend(bytes(pad))
        return
    fmt, size = DATA[s.name]
    for op in s.operands:
        value = _value(st, s.line, op, floats=s.name in (".f32", ".fp16", ".bf16"))
        if value is None:
            continue
        try:
            sec.data.extend(_pack(s.name, fmt, value))
        except (struct.error, OverflowError):
            st.error(s.line, op.col, f"value {value!r} does not fit {s.name}")


def _pack(name: str, fmt: str | None, value: float) -> bytes:
    if name == ".bf16":
        bits = struct.unpack("<I", struct.pack("<f", float(value)))[0]
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16  # round to nearest even
        return struct.pack("<H", bits & 0xFFFF)
    return struct.pack(fmt, value)  # type: ignore[arg-type]


# ---- symbols --------------------------------------------------------------------------------

def _lookup(st: _State, line: int):
    def find(name: str, col: int) -> int:
        if name in st.labels:
            return st.labels[name]
        if name in st.data_labels:
            return st.data_labels[name]
        if name in st.const_values:
            return st.const_values[name]
        if name in st.constants:
            if name in st.resolving:
                raise ExprError(f"'{name}' is defined in terms of itself", col)
            st.resolving.add(name)
            try:
                value = evaluate(st.constants[name], find)
            except ExprError as exc:
                if exc.line is None:
                    exc.line = st.const_lines[name]
                raise
            finally:
                st.resolving.discard(name)
            st.const_values[name] = int(value)
            return int(value)
        raise ExprError(f"undefined symbol '{name}'", col)
    return find


def _value(st: _State, line: int, op: Operand, floats: bool = False) -> int | float | None:
    if op.kind != "expr":
        st.error(line, op.col, "expected a number or expression")
        return None
    try:
        return evaluate(op.value, _lookup(st, line), floats)  # type: ignore[arg-type]
    except ExprError as exc:
        st.error(exc.line or line, exc.col, exc.message)
        return None


def _int(st: _State, line: int, op: Operand) -> int | None:
    v = _value(st, line, op)
    return v if isinstance(v, int) else None


# ---- pass 2: operands -----------------------------------------------------------------------

def _encode(st: _State, data_stmts: list) -> Program:
    instructions: list[Instruction] = []
    for s, spec in st.instrs:
        ins = _instruction(st, s, spec)
        if ins is not None:
            instructions.append(ins)
    constants = {}
    for name in st.constants:
        line = st.const_lines[name]
        try:
            constants[name] = _lookup(st, line)(name, st.constants[name].col)
        except ExprError as exc:
            st.error(exc.line or line, exc.col, exc.message)
            continue
        if not -1 << 63 <= constants[name] < 1 << 63:  # a binary stores symbols as int64
            st.error(line, st.constants[name].col, f"constant '{name}' = {constants[name]} "
                                                   f"does not fit 64 bits")
    constants.update(st.data_labels)
    labels = {k: v for k, v in st.labels.items() if not k.startswith(".L")}
    segments = tuple(DataSegment(_space(sec.space), sec.addr, bytes(sec.data))
                     for sec in st.sections if sec.data)
    return Program(tuple(instructions), segments, labels, constants)


def _space(code: int) -> Space:
    return Space(code)


def _instruction(st: _State, s: Statement, spec: OpSpec) -> Instruction | None:
    values = _match(st, s, spec)
    if values is None:
        return None
    args: list[int] = []
    ok = True
    for operand in spec.operands:
        op = values.get(operand.name)
        if op is None:
            args.extend(operand.kind.encode(operand.default))
            continue
        value = _operand_value(st, s.line, op, operand.kind)
        if value is _BAD:
            ok = False
            continue
        try:
            args.extend(operand.kind.encode(value))
        except OperandError as exc:
            st.error(s.line, op.col, f"operand '{operand.name}': {exc}")
            ok = False
    return Instruction(spec.opcode, tuple(args)) if ok else None


def _match(st: _State, s: Statement, spec: OpSpec) -> dict[str, Operand] | None:
    names = [o.name for o in spec.operands]
    values: dict[str, Operand] = {}
    positional = [o for o in s.operands if o.key is None]
    if len(positional) > len(names):
        extra = positional[len(names)]
        if not names:
            st.error(s.line, extra.col, f"{spec.mnemonic} takes no operands")
            return None
        st.error(s.line, extra.col, f"{spec.mnemonic} takes at most {len(names)} operands, got "
                                    f"{len(positional)} ({_signature(spec)})")
        return None
    for name, op in zip(names, positional):
        values[name] = op
    for op in s.operands:
        if op.key is None:
            continue
        if op.key not in names:
            hint = difflib.get_close_matches(op.key, names, 1)
            st.error(s.line, op.col, f"{spec.mnemonic} has no operand '{op.key}'" +
                     (f" (did you mean '{hint[0]}'?)" if hint else ""))
            return None
        if op.key in values:
            st.error(s.line, op.col, f"operand '{op.key}' given twice")
            return None
        values[op.key] = op
    missing = [o.name for o in spec.operands if not o.optional and o.name not in values]
    if missing:
        st.error(s.line, s.col, f"{spec.mnemonic}: missing operand '{missing[0]}' "
                                f"({_signature(spec)})")
        return None
    return values


_BAD = object()


def _operand_value(st: _State, line: int, op: Operand, kind: object) -> object:
    if isinstance(kind, Mem):
        return _mem(st, line, op)
    if isinstance(kind, (DTypeKind, Choice, AReg, Flags)):
        if op.kind == "flags" and isinstance(kind, Flags):
            return op.value
        if op.kind == "expr" and op.value.op in ("name", "reg"):
            return f"a{op.value.a}" if op.value.op == "reg" else op.value.a
        if op.kind == "expr" and op.value.op == "num" and op.value.a == 0 and \
                isinstance(kind, Flags):
            return 0
        st.error(line, op.col, f"expected {kind.doc}")
        return _BAD
    if op.kind == "mem":
        st.error(line, op.col, "expected a number, got a memory operand")
        return _BAD
    value = _value(st, line, op, floats=isinstance(kind, F32))
    return _BAD if value is None else value


def _mem(st: _State, line: int, op: Operand) -> object:
    if op.kind != "mem":
        st.error(line, op.col, "expected a memory operand like sram[0x100]")
        return _BAD
    space, expr = op.value  # type: ignore[misc]
    if space not in SPACES:
        st.error(line, op.col, f"unknown memory space '{space}' (expected hbm, sram, acc)")
        return _BAD
    base, reg = split_register(expr)
    addr = 0
    if base is not None:
        try:
            addr = evaluate(base, _lookup(st, line))  # type: ignore[assignment]
        except ExprError as exc:
            st.error(exc.line or line, exc.col, exc.message)
            return _BAD
    return MemRef(_space(SPACES[space]), addr, reg)


def _signature(spec: OpSpec) -> str:
    return "expected: " + ", ".join(f"[{o.name}]" if o.optional else o.name
                                    for o in spec.operands)


def _unknown(name: str, choices=None, what: str = "mnemonic") -> str:  # noqa: ANN001
    hint = difflib.get_close_matches(name, list(choices or BY_MNEMONIC), 1)
    return f"unknown {what} '{name}'" + (f" (did you mean '{hint[0]}'?)" if hint else "")
