"""Parse expanded assembly text into statements, values built during the LALR parse.

The whole text is parsed in one pass (fast); only when that fails is it parsed again line
by line, so that every syntax error of the file is reported, each with its position.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import LarkError, UnexpectedCharacters, UnexpectedInput, UnexpectedToken

GRAMMAR = (Path(__file__).parent / "grammar.lark").read_text()
SUFFIX = {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}


class Expr:
    """An integer/float expression, kept unevaluated until every name is known (``bad``: a
    literal that cannot be a value, reported when it is evaluated)."""

    __slots__ = ("op", "a", "b", "col")

    def __init__(self, op: str, a: object, b: object = None, col: int = 0) -> None:
        self.op, self.a, self.b, self.col = op, a, b, col


@dataclass
class Operand:
    kind: str  # expr | mem | flags | string (a keyword operand has ``key`` set)
    value: object
    col: int
    key: str | None = None


@dataclass
class Statement:
    line: int  # 1-based line of the expanded text
    label: tuple[str, int] | None  # (name, col)
    kind: str | None  # "instr" | "directive" | None (label only)
    name: str = ""
    col: int = 0
    operands: tuple[Operand, ...] = ()


def _number(tok: Token) -> Expr:
    text = str(tok).replace("_", "")
    scale = 1
    for suffix, mult in SUFFIX.items():
        if text.endswith(suffix):
            text, scale = text[:-len(suffix)], mult
    low = text.lower()
    if low.startswith(("0x", "0b")):
        value: int | float = int(low, 0)
    elif any(c in low for c in ".e"):
        value = float(text)
    elif len(text) > 1000:  # int() refuses, and no operand holds it: an error at evaluation
        return Expr("bad", f"number of {len(text)} digits is out of range", None, tok.column)
    else:
        value = int(text)
    return Expr("num", value * scale if scale > 1 else value, None, tok.column)


def _bin(op: str):
    def build(self, a: Expr, b: Expr) -> Expr:
        return Expr(op, a, b, a.col)
    return build


@v_args(inline=True)
class _Build(Transformer):
    number = staticmethod(_number)
    add, sub, mul, div, shl, shr = (_bin(o) for o in ("+", "-", "*", "/", "<<", ">>"))

    def name(self, tok: Token) -> Expr:
        return Expr("name", str(tok), None, tok.column)

    def neg(self, a: Expr) -> Expr:
        return Expr("neg", a, None, a.col - 1)

    def mem(self, space: Token, e: Expr) -> Operand:
        return Operand("mem", (str(space), e), space.column)

    def keyword(self, key: Token, value: object) -> Operand:
        inner = value if isinstance(value, Operand) else Operand("expr", value, value.col)
        return Operand(inner.kind, inner.value, key.column, str(key))

    def flags(self, *names: Token) -> Operand:
        return Operand("flags", tuple(str(n) for n in names), names[0].column)

    def string(self, tok: Token) -> Operand:
        return Operand("string", str(tok)[1:-1], tok.column)

    def reg(self, tok: Token) -> Expr:
        return Expr("reg", int(str(tok)[1]), None, tok.column)

    def operands(self, *ops: object) -> tuple[Operand, ...]:
        return tuple(o if isinstance(o, Operand) else Operand("expr", o, o.col) for o in ops)

    def label(self, tok: Token) -> tuple[str, int, int]:
        return (str(tok), tok.column, tok.line)

    def instr(self, tok: Token, ops: tuple[Operand, ...] | None) -> Statement:
        return Statement(tok.line, None, "instr", str(tok), tok.column, ops or ())

    def directive(self, tok: Token, ops: tuple[Operand, ...] | None) -> Statement:
        return Statement(tok.line, None, "directive", str(tok), tok.column, ops or ())

    def line(self, *items: object) -> Statement:
        if isinstance(items[0], tuple):
            name, col, line = items[0]
            if len(items) == 1:
                return Statement(line, (name, col), None)
            stmt = items[1]
            stmt.label = (name, col)  # type: ignore[union-attr]
            return stmt  # type: ignore[return-value]
        return items[0]  # type: ignore[return-value]

    def start(self, *lines: Statement) -> list[Statement]:
        return list(lines)


_FILE = Lark(GRAMMAR, parser="lalr", lexer="basic", transformer=_Build(), maybe_placeholders=True)
_LINE = Lark(GRAMMAR, parser="lalr", lexer="basic", transformer=_Build(), maybe_placeholders=True,
             start="line")


@dataclass(frozen=True)
class SyntaxProblem:
    line: int
    col: int
    message: str


def parse(text: str) -> tuple[list[Statement], list[SyntaxProblem]]:
    """Statements of the text (one per statement line), and every line's syntax error.

    Each distinct line is parsed once — assembly repeats itself (unrolled kernels, macro
    bodies) — and the distinct lines are parsed together in one LALR pass; only if that
    fails are they parsed one by one, so that every error is found.
    """
    lines = text.split("\n")
    index: dict[str, int] = {}
    for raw in lines:
        if raw not in index:
            index[raw] = len(index)
    uniques = list(index)
    parsed, problems = _parse_unique(uniques)
    stmts: list[Statement] = []
    found: list[SyntaxProblem] = []
    for i, raw in enumerate(lines, start=1):
        u = index[raw]
        stmt = parsed.get(u)
        if stmt is not None:
            stmts.append(replace(stmt, line=i))
        elif u in problems:
            p = problems[u]
            found.append(SyntaxProblem(i, p.col, p.message))
    return stmts, found


def _parse_unique(lines: list[str]) -> tuple[dict[int, Statement], dict[int, SyntaxProblem]]:
    try:
        stmts = _FILE.parse("\n".join(lines) + "\n")
        return {s.line - 1: s for s in stmts}, {}
    except LarkError:
        pass
    out: dict[int, Statement] = {}
    problems: dict[int, SyntaxProblem] = {}
    for i, raw in enumerate(lines):
        if not raw.strip() or raw.strip()[0] in ";#":
            continue
        try:
            out[i] = _LINE.parse(raw)
        except UnexpectedInput as exc:
            problems[i] = SyntaxProblem(i + 1, getattr(exc, "column", 1) or 1, _explain(exc))
        except LarkError as exc:  # pragma: no cover - any other parser failure
            problems[i] = SyntaxProblem(i + 1, 1, f"syntax error: {exc}")
    return out, problems


def _explain(exc: UnexpectedInput) -> str:
    if isinstance(exc, UnexpectedCharacters):
        return f"syntax error: unexpected character {exc.char!r}"
    if isinstance(exc, UnexpectedToken):
        tok = exc.token
        if tok.type == "$END":
            return "syntax error: the line ends too early"
        return f"syntax error: unexpected {_describe(tok)}"
    return "syntax error"


def _describe(tok: Token) -> str:
    return {"NAME": f"name '{tok}'", "NUMBER": f"number {tok}", "REG": f"register {tok}",
            "_NL": "end of line", "STRING": f"string {tok}"}.get(tok.type, f"'{tok}'")
