"""Integer expressions of assembly operands, evaluated by our own evaluator (never ``eval``).

``+ - * / << >>``, parentheses and unary minus over integers; ``/`` divides and truncates
toward zero (as C does); a float literal is allowed only where the operand takes one.
"""

from __future__ import annotations

from collections.abc import Callable

from assembler.parser import Expr

MAX_SHIFT = 128
MAX_BITS = 512  # no operand or datum is wider; a bound keeps constant chains from exploding


class ExprError(Exception):
    """``line`` is set when the error lies in another line (a constant's definition)."""

    def __init__(self, message: str, col: int, line: int | None = None) -> None:
        super().__init__(message)
        self.message, self.col, self.line = message, col, line


def evaluate(e: Expr, lookup: Callable[[str, int], int], floats: bool = False) -> int | float:
    try:
        value = _evaluate(e, lookup, floats)
    except RecursionError:
        raise ExprError("expression nested too deeply", e.col) from None
    except OverflowError:
        raise ExprError("value too large for a float", e.col) from None
    if isinstance(value, int) and value.bit_length() > MAX_BITS:
        raise ExprError(f"value out of range (more than {MAX_BITS} bits)", e.col)
    return value


def _evaluate(e: Expr, lookup: Callable[[str, int], int], floats: bool = False) -> int | float:
    op = e.op
    if op == "bad":
        raise ExprError(str(e.a), e.col)
    if op == "num":
        if isinstance(e.a, float) and not floats:
            raise ExprError(f"expected an integer, got {e.a!r}", e.col)
        return e.a  # type: ignore[return-value]
    if op == "name":
        return lookup(e.a, e.col)  # type: ignore[arg-type]
    if op == "reg":
        raise ExprError(f"address register a{e.a} can only be added to a memory address",
                        e.col)
    if op == "neg":
        return -_evaluate(e.a, lookup, floats)  # type: ignore[arg-type]
    a = _evaluate(e.a, lookup, floats)  # type: ignore[arg-type]
    b = _evaluate(e.b, lookup, floats)  # type: ignore[arg-type]
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if op == "/":
        if b == 0:
            raise ExprError("division by zero", e.b.col)  # type: ignore[union-attr]
        if isinstance(a, float) or isinstance(b, float):
            return a / b
        q = abs(a) // abs(b)
        return q if (a >= 0) == (b >= 0) else -q
    if isinstance(a, float) or isinstance(b, float):
        raise ExprError(f"shift of a non-integer ({op})", e.col)
    if not 0 <= b <= MAX_SHIFT:
        raise ExprError(f"shift count {b} out of range 0..{MAX_SHIFT}", e.b.col)  # type: ignore
    return a << b if op == "<<" else a >> b


def split_register(e: Expr) -> tuple[Expr | None, int | None]:
    """``addr + aN`` / ``aN + addr`` / ``aN`` -> (addr, N); anything else -> (e, None)."""
    if e.op == "reg":
        return None, e.a  # type: ignore[return-value]
    if e.op == "+" and e.b.op == "reg":  # type: ignore[union-attr]
        return e.a, e.b.a  # type: ignore[return-value,union-attr]
    if e.op == "+" and e.a.op == "reg":  # type: ignore[union-attr]
        return e.b, e.a.a  # type: ignore[return-value,union-attr]
    return e, None
