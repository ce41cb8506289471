"""Reading YAML safely, with syntax errors located as ``file:line:col: problem``."""

from __future__ import annotations

from pathlib import Path

import yaml


def read_yaml(path: Path, error: type[Exception]) -> object:
    """The parsed document (``yaml.safe_load``: no code runs); problems raise ``error``."""
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        raise error(f"{path.name}{where}: {getattr(exc, 'problem', None) or 'invalid YAML'}"
                    ) from None
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise error(f"{path.name}: cannot read ({why})") from None
    except RecursionError:
        raise error(f"{path.name}: invalid YAML (nested too deeply)") from None
    except ValueError as exc:  # a scalar the constructors refuse: 2001-13-45, a 5000-digit int
        raise error(f"{path.name}: invalid YAML value ({str(exc).split(':')[0]})") from None
