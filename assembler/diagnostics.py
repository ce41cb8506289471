"""Assembler diagnostics: ``file:line:col: message``, the source line and a caret."""

from __future__ import annotations

from dataclasses import dataclass

from isa.errors import TesseraError


@dataclass(frozen=True)
class Origin:
    """Where an expanded line came from (and through which macro, if any)."""

    file: str
    line: int  # 1-based
    text: str
    macro: str | None = None


@dataclass(frozen=True)
class Diagnostic:
    file: str
    line: int
    col: int  # 1-based
    message: str
    source: str

    def __str__(self) -> str:
        if self.line < 1:  # about the file as a whole (it cannot be read): no line to point at
            return f"{self.file}: {self.message}"
        caret = " " * (max(self.col, 1) - 1) + "^"
        return f"{self.file}:{self.line}:{self.col}: {self.message}\n{self.source}\n{caret}"


class AsmError(TesseraError):
    """Every error of one assembly run, in file order."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = diagnostics
        super().__init__("\n".join(str(d) for d in diagnostics))


def at(origin: Origin, col: int, message: str) -> Diagnostic:
    """A diagnostic at ``col`` (1-based) of an expanded line; inside a macro the position is
    the invocation's, and the message says which macro."""
    if origin.macro:
        message = f"{message} (in macro '{origin.macro}')"
        col = len(origin.text) - len(origin.text.lstrip()) + 1
    return Diagnostic(origin.file, origin.line, col, message, origin.text)
