"""Running the CLI in-process from a test, and the shape of a user error."""

from __future__ import annotations

from experiments.cli import main


def run(capsys, *args: str) -> tuple[int, str, str]:  # noqa: ANN001
    """(exit code, stdout, stderr) of ``tessera ARGS``."""
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line_error(code: int, err: str, *parts: str) -> None:
    """A user's mistake: exit 1, one line on stderr, no traceback, naming ``parts``."""
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err, err
    for part in parts:
        assert part in err, (part, err)
