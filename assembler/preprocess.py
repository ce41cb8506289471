"""Text-level expansion before parsing: ``.include`` and macros.

Every expanded line keeps its origin (file, line, and the macro it came from), so a
diagnostic always points at a line the user wrote: inside a macro, at the invocation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from assembler.diagnostics import Diagnostic, Origin

MAX_MACRO_DEPTH = 16
MAX_LINES = 1_000_000  # macros and includes can multiply lines exponentially
_FIRST = re.compile(r"^\s*(?:([A-Za-z_$.][\w.$]*)\s*:\s*)?([A-Za-z_$][\w.$]*)?(.*)$")
_DIRECTIVE = re.compile(r"^\s*(\.[a-z]+)\b\s*(.*)$")
_PARAM = re.compile(r"\\([A-Za-z_]\w*)")


@dataclass
class Macro:
    name: str
    params: list[str]
    body: list[tuple[str, Origin]]
    origin: Origin


@dataclass
class Expansion:
    lines: list[tuple[str, Origin]] = field(default_factory=list)  # (code, origin)
    problems: list[Diagnostic] = field(default_factory=list)
    macros: dict[str, Macro] = field(default_factory=dict)
    overflow: bool = False  # MAX_LINES reached: expansion stopped


def _strip_comment(text: str) -> str:
    out, in_str = [], False
    for ch in text:
        if ch == '"':
            in_str = not in_str
        if ch in ";#" and not in_str:
            break
        out.append(ch)
    return "".join(out)


def split_args(text: str) -> list[str]:
    """Comma-separated arguments, commas inside brackets or parentheses kept."""
    args, depth, cur = [], 0, []
    for ch in text:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        if ch == "," and depth == 0:
            args.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    tail = "".join(cur).strip()
    if tail or args:
        args.append(tail)
    return args


def expand(text: str, filename: str, mnemonics: set[str]) -> Expansion:
    out = Expansion()
    _file(text, filename, out, mnemonics, (str(Path(filename).resolve())
                                           if Path(filename).exists() else filename,))
    return out


def _file(text: str, filename: str, out: Expansion, mnemonics: set[str],
          stack: tuple[str, ...]) -> None:
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        raw = lines[i].rstrip("\r")
        origin = Origin(filename, i + 1, raw)
        code = _strip_comment(raw)
        d = _DIRECTIVE.match(code)
        if d and d.group(1) == ".include":
            _include(d.group(2).strip(), origin, out, mnemonics, stack)
        elif d and d.group(1) == ".macro":
            i = _define(lines, i, d.group(2), origin, out, mnemonics)
        elif d and d.group(1) == ".endm":
            out.problems.append(_at(origin, ".endm without .macro"))
        else:
            _line(code, origin, out, 0)
        i += 1


def _include(arg: str, origin: Origin, out: Expansion, mnemonics: set[str],
             stack: tuple[str, ...]) -> None:
    if not (len(arg) >= 2 and arg[0] == arg[-1] == '"'):
        out.problems.append(_at(origin, '.include expects a quoted path, e.g. .include "x.s"'))
        return
    base = Path(origin.file).parent if origin.file != "<input>" else Path(".")
    path = (base / arg[1:-1]).resolve()
    if _full(origin, out):
        return
    if str(path) in stack:
        chain = " -> ".join(Path(p).name for p in (*stack, str(path)))
        out.problems.append(_at(origin, f"include cycle: {chain}"))
        return
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        why = "no such file" if isinstance(exc, FileNotFoundError) else str(exc)
        out.problems.append(_at(origin, f"cannot include '{arg[1:-1]}': {why}"))
        return
    _file(text, str(Path(origin.file).parent / arg[1:-1]) if origin.file != "<input>"
          else arg[1:-1], out, mnemonics, (*stack, str(path)))


def _define(lines: list[str], i: int, header: str, origin: Origin, out: Expansion,
            mnemonics: set[str]) -> int:
    parts = split_args(header.replace(" ", ",", 1)) if header.strip() else []
    name = parts[0] if parts else ""
    params = [p for p in parts[1:] if p]
    body: list[tuple[str, Origin]] = []
    j = i + 1
    while j < len(lines):
        raw = lines[j].rstrip("\r")
        d = _DIRECTIVE.match(_strip_comment(raw))
        if d and d.group(1) == ".endm":
            break
        if d and d.group(1) == ".macro":
            out.problems.append(_at(Origin(origin.file, j + 1, raw), "nested .macro definition"))
        body.append((_strip_comment(raw), Origin(origin.file, j + 1, raw)))
        j += 1
    else:
        out.problems.append(_at(origin, f"macro '{name}' has no .endm"))
        return j
    if not re.fullmatch(r"[A-Za-z_][\w.]*", name):
        out.problems.append(_at(origin, f".macro needs a name, got '{name}'"))
    elif name in mnemonics:
        out.problems.append(_at(origin, f"macro name '{name}' is an instruction"))
    elif name in out.macros:
        out.problems.append(_at(origin, f"macro '{name}' is already defined"))
    else:
        bad = [p for p in params if not re.fullmatch(r"[A-Za-z_]\w*", p)]
        if bad:
            out.problems.append(_at(origin, f"bad macro parameter '{bad[0]}'"))
        out.macros[name] = Macro(name, params, body, origin)
    return j


def _full(origin: Origin, out: Expansion, more: int = 0) -> bool:
    """True (and the problem reported once) when ``more`` lines would pass ``MAX_LINES``."""
    if not out.overflow and len(out.lines) + more < MAX_LINES:
        return False
    if not out.overflow:
        out.overflow = True
        out.problems.append(_at(origin, f"expansion exceeds {MAX_LINES:,} lines (macros or "
                                        f".include repeating themselves?)"))
    return True


def _line(code: str, origin: Origin, out: Expansion, depth: int) -> None:
    if _full(origin, out):
        return
    m = _FIRST.match(code)
    word = m.group(2) if m else None
    macro = out.macros.get(word) if word else None
    if macro is None:
        out.lines.append((code, origin))
        return
    if depth >= MAX_MACRO_DEPTH:
        out.problems.append(_at(origin, f"macro expansion deeper than {MAX_MACRO_DEPTH} "
                                        f"(recursive macro '{macro.name}'?)"))
        return
    args = split_args(m.group(3))
    if len(args) != len(macro.params):
        out.problems.append(_at(origin, f"macro '{macro.name}' takes {len(macro.params)} "
                                        f"argument(s), got {len(args)}"))
        return
    if _full(origin, out, _size(macro, out.macros, 0, {})):
        return
    if m.group(1):
        out.lines.append((f"{m.group(1)}:", origin))
    values = dict(zip(macro.params, args))
    for body, _ in macro.body:
        def sub(p: re.Match) -> str:
            return values.get(p.group(1), p.group(0))
        inner = Origin(origin.file, origin.line, origin.text, origin.macro or macro.name)
        _line(_PARAM.sub(sub, body), inner, out, depth + 1)


def _size(macro: Macro, macros: dict[str, Macro], depth: int, memo: dict[str, int]) -> int:
    """About how many lines an invocation expands to (capped), without expanding it."""
    if macro.name not in memo:
        memo[macro.name] = 1  # a recursive macro: the depth limit reports it
        total = 0
        for body, _ in macro.body:
            m = _FIRST.match(body)
            inner = macros.get(m.group(2)) if m and m.group(2) else None
            if inner is not None and depth < MAX_MACRO_DEPTH:
                total += 1 + _size(inner, macros, depth + 1, memo)
            else:
                total += 1
        memo[macro.name] = min(total, MAX_LINES + 1)
    return memo[macro.name]


def _at(origin: Origin, message: str) -> Diagnostic:
    col = len(origin.text) - len(origin.text.lstrip()) + 1
    return Diagnostic(origin.file, origin.line, col, message, origin.text)
