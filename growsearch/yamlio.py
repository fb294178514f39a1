"""Reading YAML and turning validation errors into one clear line.

Every config type in growsearch is a frozen pydantic model; :func:`load_model` reads a
YAML file into one and raises :class:`~growsearch.errors.ConfigError` naming the file,
the line and the key (``file.yaml:7: training.epochs: Input should be greater than 0 (got -1)``).

All of growsearch's YAML goes through one safe loader (:class:`_Loader`) that

- refuses a key given twice in one mapping (``file.yaml:9: duplicate key 'epochs' (first
  at line 4)``), where plain YAML silently keeps the last one;
- refuses nesting deeper than :data:`MAX_DEPTH` with one line, instead of a
  ``RecursionError`` traceback;
- remembers the line of every mapping key and list item (:class:`LineDict`,
  :class:`LineList`: a ``dict``/``list`` with a ``lines`` table), so validation errors name
  the line of the offending key, and an unknown key gets a "did you mean" suggestion.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Generator, Iterable
from pathlib import Path
from typing import Any, TypeVar

import pydantic
import yaml
from yaml.representer import SafeRepresenter

from growsearch.errors import ConfigError, GrowsearchError

M = TypeVar("M", bound=pydantic.BaseModel)

#: Deepest nesting of mappings/lists accepted in a YAML file (configs need fewer than 10).
MAX_DEPTH = 100


class LineDict(dict[Any, Any]):
    """A mapping read from YAML: ``lines[key]`` is the 1-based line of each key, ``line`` of the mapping."""

    lines: dict[Any, int]
    line: int = 0

    def __reduce_ex__(self, protocol: Any) -> Any:  # pickles (torch checkpoints, Ray) as a plain dict
        return (dict, (), None, None, iter(self.items()))


class LineList(list[Any]):
    """A list read from YAML: ``lines[i]`` is the 1-based line of item ``i``, ``line`` of the list."""

    lines: list[int]
    line: int = 0

    def __reduce_ex__(self, protocol: Any) -> Any:  # pickles as a plain list
        return (list, (), None, iter(self))


def copy_lines(src: Any, new: Any, order: list[int] | None = None) -> Any:
    """``new`` (a copy of ``src``, a list reordered by ``order``) carrying ``src``'s line table."""
    if isinstance(src, LineDict) and isinstance(new, dict):
        out = LineDict(new)
        out.lines, out.line = dict(src.lines), src.line
        return out
    if isinstance(src, LineList) and isinstance(new, list):
        out_l = LineList(new)
        out_l.lines = [src.lines[i] for i in order] if order is not None else list(src.lines)
        out_l.line = src.line
        return out_l
    return new


def plain(data: Any) -> Any:
    """``data`` with every :class:`LineDict`/:class:`LineList` turned into a plain dict/list
    (what is validated and stored never carries the line tables)."""
    if isinstance(data, dict):
        return {k: plain(v) for k, v in data.items()} if type(data) is not dict or any(
            isinstance(v, dict | list) for v in data.values()) else data
    if isinstance(data, list):
        return [plain(v) for v in data]
    return data


# dumping what was loaded stays plain YAML
SafeRepresenter.add_representer(LineDict, SafeRepresenter.represent_dict)
SafeRepresenter.add_representer(LineList, SafeRepresenter.represent_list)


class _YamlInputError(Exception):
    """Raised inside the loader; :func:`parse_yaml` turns it into one line naming the source."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` refusing duplicate keys and deep nesting, recording lines."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise _YamlInputError(mark.line + 1, f"nested more than {MAX_DEPTH} levels deep")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first: dict[Any, int] = {}
        for key_node, _ in node.value:  # the file's own keys (merged ``<<`` keys may be overridden)
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                key = self.construct_object(key_node)
                line = key_node.start_mark.line + 1
                if key in first:
                    raise _YamlInputError(line, f"duplicate key {key!r} (first at line {first[key]})")
                first[key] = line
        self.flatten_mapping(node)
        out = LineDict()
        out.lines = {}
        out.line = node.start_mark.line + 1
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                hash(key)
            except TypeError:
                raise _YamlInputError(key_node.start_mark.line + 1, f"unhashable key {key!r}") from None
            out[key] = self.construct_object(value_node, deep=deep)
            out.lines[key] = key_node.start_mark.line + 1
        return out

    def construct_yaml_seq(self, node: yaml.SequenceNode) -> Generator[list[Any], None, None]:
        data = LineList()
        data.line = node.start_mark.line + 1
        data.lines = [n.start_mark.line + 1 for n in node.value]
        yield data
        data.extend(self.construct_sequence(node))


def _construct_yaml_map(loader: _Loader, node: yaml.MappingNode) -> Iterable[dict[Any, Any]]:
    data = LineDict()
    data.lines = {}
    data.line = node.start_mark.line + 1
    yield data
    value = loader.construct_mapping(node)
    data.update(value)
    data.lines = value.lines  # type: ignore[attr-defined]


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_yaml_map)
_Loader.add_constructor("tag:yaml.org,2002:seq", _Loader.construct_yaml_seq)


def parse_yaml(text: str, source: str, *, error: type[GrowsearchError] = ConfigError) -> Any:
    """Parse YAML ``text`` read from ``source`` with the checking loader.

    Raises:
        error: malformed YAML (``source:line:column: malformed YAML: ...``), a duplicate
            key or nesting deeper than :data:`MAX_DEPTH` (``source:line: ...``).
    """
    loader = _Loader(text)
    try:
        return loader.get_single_data()
    except _YamlInputError as exc:
        raise error(f"{source}:{exc.line}: {exc.message}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise error(f"{source}{where}: malformed YAML: {problem}") from None
    except RecursionError:  # e.g. deep flow nesting inside one scalar-free line
        raise error(f"{source}: nested too deeply to read") from None
    finally:
        loader.dispose()


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
    """Read a YAML file (mappings come back as :class:`LineDict`, lists as :class:`LineList`).

    Raises:
        ConfigError: the file is missing, unreadable, not valid YAML (with its line), has a
            duplicate key or is nested too deeply.
    """
    p = Path(path)
    return parse_yaml(read_text(p, what=what), str(p))


# ---- the kind of a file --------------------------------------------------------------------
#: Top-level keys that only each kind of file has (a file's kind is guessed from them).
KIND_KEYS: dict[str, frozenset[str]] = {
    "study": frozenset({"train", "space", "budget", "objectives", "sampler", "reference", "execution"}),
    "training config": frozenset({"model", "training", "data"}),
    "growth schedule": frozenset({"events", "schedules"}),
}
#: How to use each kind of file.
KIND_USE = {
    "study": "growsearch run FILE",
    "training config": "growsearch train FILE, or name it as a study's train:",
    "growth schedule": "growsearch train CONFIG --schedule FILE",
}


def check_kind(data: Any, source: str, expected: str) -> None:
    """Refuse a file of another kind with one line saying what it is and how to use it.

    Args:
        data: the file's top-level YAML.
        source: the file (errors start with it).
        expected: ``study``, ``training config`` or ``growth schedule``.

    Raises:
        ConfigError: ``data`` has keys of another kind and none of ``expected``.
    """
    if not isinstance(data, dict) or set(data) & KIND_KEYS[expected]:
        return
    for kind, keys in KIND_KEYS.items():
        if kind != expected and set(data) & keys:
            raise ConfigError(f"{source}: this file is a {kind}, not a {expected} (use it with: {KIND_USE[kind]})")


# ---- validation errors ----------------------------------------------------------------------
def key_line(data: Any, loc: Iterable[Any]) -> int | None:
    """The line of the deepest key of ``loc`` found in ``data`` read by :func:`load_yaml`."""
    line = getattr(data, "line", None) or None
    cur = data
    for part in loc:
        if isinstance(cur, LineDict) and part in cur:
            line = cur.lines.get(part, line)
            cur = cur[part]
        elif isinstance(cur, LineList) and isinstance(part, int) and 0 <= part < len(cur):
            line = cur.lines[part]
            cur = cur[part]
        else:
            break
    return line


def _model_classes(tp: Any) -> list[type[pydantic.BaseModel]]:
    """pydantic models inside an annotation (``X``, ``X | None``, ``tuple[X, ...]``...)."""
    if isinstance(tp, type) and issubclass(tp, pydantic.BaseModel):
        return [tp]
    out: list[type[pydantic.BaseModel]] = []
    if typing.get_origin(tp) is not None or isinstance(tp, types.UnionType):
        for a in typing.get_args(tp):
            out += _model_classes(a)
    return out


def _fields_at(model: type[pydantic.BaseModel] | None, loc: tuple[Any, ...]) -> list[str]:
    """Field names (and aliases) of the model that validates the mapping at ``loc``."""
    models = [model] if model is not None else []
    for part in loc:
        if isinstance(part, int) or not models:
            continue
        nxt: list[type[pydantic.BaseModel]] = []
        for m in models:
            f = m.model_fields.get(part)
            if f is not None:
                nxt += _model_classes(f.annotation)
        models = nxt
    names: list[str] = []
    for m in models:
        for n, f in m.model_fields.items():
            names.append(f.alias or n)
    return sorted(set(names))


def did_you_mean(word: str, valid: Iterable[str]) -> str:
    """``; did you mean 'objectives'?`` for a close match in ``valid``, else ``""``."""
    m = difflib.get_close_matches(str(word), list(valid), n=1, cutoff=0.6)
    return f"; did you mean {m[0]!r}?" if m else ""


def _with_line(source: str, line: int | None, path: str | None) -> str:
    if line is None:
        return source
    if path and source.startswith(path):
        return f"{path}:{line}{source[len(path):]}"
    return f"{source} (line {line})"


def validation_message(err: pydantic.ValidationError, source: str, data: Any = None,
                       model: type[pydantic.BaseModel] | None = None, path: str | None = None) -> str:
    """One line per problem: ``source:line: a.b[2].c: message (got value)``.

    Args:
        err: the validation error.
        source: how the data is named (starts with the file's path for a file).
        data: the validated data as read by :func:`load_yaml` (for line numbers).
        model: the model validated (for "did you mean" on unknown keys).
        path: the file the data came from, when ``source`` starts with it.
    """
    if path is None and data is not None and getattr(data, "line", None):
        path = source.split(" ", 1)[0].split(":", 1)[0] or None
    lines = []
    for e in err.errors():
        loc = ""
        parts = tuple(e.get("loc", ()))
        for part in parts:
            loc += f"[{part}]" if isinstance(part, int) else (f".{part}" if loc else str(part))
        got = e.get("input")
        got_s = ""
        if e.get("type") not in ("missing", "extra_forbidden") and not isinstance(got, dict | list):
            got_s = f" (got {got!r})"
        msg = e.get("msg", "invalid")
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        if e.get("type") == "extra_forbidden" and parts:
            valid = _fields_at(model, parts[:-1])
            msg = "unknown key" + did_you_mean(str(parts[-1]), valid)
            if valid and not msg.endswith("?"):
                msg += f"; valid keys: {', '.join(valid)}"
        src = _with_line(source, key_line(data, parts), path) if data is not None else source
        lines.append(f"{src}: {loc or '<top>'}: {msg}{got_s}")
    return "\n".join(lines)


def parse_model(model: type[M], data: Any, source: str, *, error: type[GrowsearchError] = ConfigError,
                lines: Any = None) -> M:
    """Validate ``data`` as ``model``; on failure raise ``error`` naming ``source``, the line and the key.

    Args:
        lines: the data as read from YAML when ``data`` is a processed copy of it (for line
            numbers); default ``data`` itself.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise error(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return model.model_validate(plain(data))
    except pydantic.ValidationError as exc:
        raise error(validation_message(exc, source, data if lines is None else lines, model)) from None


def load_model(model: type[M], path: str | Path, *, what: str = "config", kind: str | None = None) -> M:
    """Read a YAML file and validate it as ``model`` (``kind``: refuse files of another kind, see :func:`check_kind`)."""
    data = load_yaml(path, what=what)
    if kind is not None:
        check_kind(data, str(path), kind)
    return parse_model(model, data, str(path))
