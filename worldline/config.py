"""YAML presets validated into typed dataclasses.

Dataclasses are the schema. :func:`from_dict` walks the dataclass fields and the YAML mapping
together and raises :class:`ConfigError` (a ValueError) naming the dotted key and the file for
an unknown key, a missing required key, or a value of the wrong type. Supported field types:
bool, int, float (ints accepted), str, pathlib.Path, Literal[...], Optional/Union, list[T],
tuple[T, ...] / tuple[A, B], dict[str, T] and nested dataclasses.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

__all__ = ["ConfigError", "from_dict", "load_config", "load_preset", "save_config", "to_dict"]

T = TypeVar("T")


class ConfigError(ValueError):
    """A config value or key is invalid; the message names the key and the source file."""


def _where(key: str, source: str | None) -> str:
    return f"{key!r}" + (f" in {source}" if source else "")


def _convert(tp: Any, value: Any, key: str, source: str | None) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, key, source)
            except ConfigError:
                continue  # try the next member of the union
        raise ConfigError(f"{_where(key, source)}: value {value!r} matches none of {tp}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{_where(key, source)}: expected one of {list(args)}, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{_where(key, source)}: expected a mapping for {tp.__name__}, got {value!r}")
        return from_dict(tp, value, source=source, prefix=key)
    if origin in (list, typing.List):  # noqa: UP006
        if not isinstance(value, list):
            raise ConfigError(f"{_where(key, source)}: expected a list, got {value!r}")
        (inner,) = args or (Any,)
        return [_convert(inner, v, f"{key}[{i}]", source) for i, v in enumerate(value)]
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{_where(key, source)}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{key}[{i}]", source) for i, v in enumerate(value))
        if args and len(args) != len(value):
            raise ConfigError(f"{_where(key, source)}: expected {len(args)} items, got {len(value)}")
        return tuple(_convert(a, v, f"{key}[{i}]", source) for i, (a, v) in enumerate(zip(args, value)))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{_where(key, source)}: expected a mapping, got {value!r}")
        kt, vt = args or (Any, Any)
        return {_convert(kt, k, key, source): _convert(vt, v, f"{key}.{k}", source) for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{_where(key, source)}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{_where(key, source)}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{_where(key, source)}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{_where(key, source)}: expected a string, got {value!r}")
        return value
    if tp is Path:
        if not isinstance(value, (str, Path)):
            raise ConfigError(f"{_where(key, source)}: expected a path string, got {value!r}")
        return Path(value)
    raise ConfigError(f"{_where(key, source)}: unsupported field type {tp}")


def from_dict(cls: type[T], data: dict, *, source: str | None = None, prefix: str = "") -> T:
    """Build dataclass ``cls`` from a plain mapping, validating every key and type.

    Raises:
        ConfigError: naming the dotted key (and ``source``) for unknown, missing or mistyped keys.
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"cls: expected a dataclass type, got {cls!r}")
    if not isinstance(data, dict):
        raise ConfigError(f"{_where(prefix or '<root>', source)}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in data if k not in fields]
    if unknown:
        k = unknown[0]
        full = f"{prefix}.{k}" if prefix else str(k)
        close = [n for n in fields if _similar(str(k), n)]
        hint = f" (did you mean {close[0]!r}?)" if close else f" (known keys: {sorted(fields)})"
        raise ConfigError(f"unknown key {full!r}" + (f" in {source}" if source else "") + hint)
    kwargs = {}
    for name, f in fields.items():
        full = f"{prefix}.{name}" if prefix else name
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], full, source)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"missing required key {full!r}" + (f" in {source}" if source else ""))
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{_where(prefix or cls.__name__, source)}: {exc}") from None


def _similar(a: str, b: str) -> bool:
    import difflib

    return difflib.SequenceMatcher(None, a, b).ratio() >= 0.75


def load_config(cls: type[T], path: str | os.PathLike) -> T:
    """Read a YAML preset and validate it into ``cls``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: invalid YAML{where}: {problem}") from None
    return from_dict(cls, data, source=str(path))


def load_preset(cls: type[T], name_or_path: str | os.PathLike, directory: str | os.PathLike) -> T:
    """A preset by name (``<directory>/<name>.yaml``) or by path, validated into ``cls``."""
    path = Path(name_or_path)
    if not path.suffix:
        path = Path(directory) / f"{name_or_path}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in Path(directory).glob("*.yaml"))
        raise FileNotFoundError(f"preset: no such file {path}; presets: {known}")
    return load_config(cls, path)


def to_dict(obj) -> dict:
    """Dataclass -> plain YAML/JSON-friendly dict (paths as strings, tuples as lists)."""

    def plain(v):
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, Path):
            return str(v)
        return v

    return plain(obj)


def save_config(obj, path: str | os.PathLike) -> None:
    """Write a dataclass as YAML, atomically."""
    from worldline.io import atomic_write

    with atomic_write(path, "w") as f:
        yaml.safe_dump(to_dict(obj), f, sort_keys=False)
