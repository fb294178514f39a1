"""Reading YAML and turning validation errors into one clear line.

Every config type in growsearch is a frozen pydantic model; :func:`load_model` reads a
YAML file into one and raises :class:`~growsearch.errors.ConfigError` naming the file
and the key (``file.yaml: training.epochs: Input should be greater than 0 (got -1)``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import pydantic
import yaml

from growsearch.errors import ConfigError, GrowsearchError

M = TypeVar("M", bound=pydantic.BaseModel)


def read_text(path: str | Path, *, what: str, error: type[GrowsearchError] = ConfigError) -> str:
    """Read a user's UTF-8 text file.

    Raises:
        error: ``<path>: <what> not found`` or ``<path>: cannot read <what>: <reason>``.
    """
    p = Path(path)
    if not p.is_file():
        raise error(f"{p}: {what} not found")
    try:
        return p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{p}: cannot read {what}: {exc}") from None


def load_yaml(path: str | Path, *, what: str = "file") -> Any:
    """Read a YAML file.

    Raises:
        ConfigError: the file is missing, unreadable or not valid YAML (with its line).
    """
    p = Path(path)
    text = read_text(p, what=what)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{p}{where}: malformed YAML: {problem}") from None


def validation_message(err: pydantic.ValidationError, source: str) -> str:
    """One line per problem: ``source: a.b[2].c: message (got value)``."""
    lines = []
    for e in err.errors():
        loc = ""
        for part in e.get("loc", ()):
            loc += f"[{part}]" if isinstance(part, int) else (f".{part}" if loc else str(part))
        got = e.get("input")
        got_s = ""
        if e.get("type") not in ("missing",) and not isinstance(got, dict | list):
            got_s = f" (got {got!r})"
        msg = e.get("msg", "invalid")
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        lines.append(f"{source}: {loc or '<top>'}: {msg}{got_s}")
    return "\n".join(lines)


def parse_model(model: type[M], data: Any, source: str, *, error: type[GrowsearchError] = ConfigError) -> M:
    """Validate ``data`` as ``model``; on failure raise ``error`` naming ``source`` and the key."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise error(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        raise error(validation_message(exc, source)) from None


def load_model(model: type[M], path: str | Path, *, what: str = "config") -> M:
    """Read a YAML file and validate it as ``model``."""
    return parse_model(model, load_yaml(path, what=what), str(path))
