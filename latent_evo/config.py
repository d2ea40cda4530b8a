"""Typed configs from plain dicts (YAML): the one builder behind `EvolveConfig` and `ZooConfig`.

`build(cls, data)` turns a mapping into the dataclass `cls`, recursing into nested dataclass
sections and lists of them, and checks every value against its field's type hint, so a typo or a
wrong type is refused before any work starts, with the key's dotted path in the message
(`finetune.evry`, `strategy.popsize`, `cohorts[1].count`). Pretraining keeps LightningCLI, which
checks its own YAML the same way through jsonargparse.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

__all__ = ["build", "check_value", "read_yaml"]


def _fail(error: type[Exception], where: str, msg: str) -> Exception:
    return error(f"{where}: {msg}" if where else msg)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        args = typing.get_args(tp)
        return f"a list of {_type_name(args[0])}" if args else "a list"
    if origin is dict or tp is dict:
        return "a mapping"
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


class _Mismatch(Exception):
    """A value does not fit a type; `build` turns it into the caller's error class."""


def check_value(value: Any, tp: Any, path: str, error: type[Exception], where: str) -> Any:
    """`value` checked (and, for dataclass sections, built) against the type hint `tp`."""
    try:
        return _check(value, tp, path, error, where)
    except _Mismatch:
        raise _fail(error, where, f"{path}: expected {_type_name(tp)}, got {value!r}") from None


def _check(value: Any, tp: Any, path: str, error: type[Exception], where: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _check(value, arg, path, error, where)
            except _Mismatch:
                continue
        raise _Mismatch
    if tp is type(None):
        if value is None:
            return None
        raise _Mismatch
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        raise _Mismatch
    if dataclasses.is_dataclass(tp):
        if value is None:  # an empty YAML section (`switch:`) means its defaults
            return tp()
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise _Mismatch
        return build(tp, value, error, where, path)
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(value, list | tuple):
            raise _Mismatch
        args = typing.get_args(tp)
        if not args:
            return list(value)
        return [check_value(v, args[0], f"{path}[{i}]", error, where) for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise _Mismatch
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _Mismatch
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _Mismatch
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return value
        if isinstance(value, str):  # YAML 1.1 reads `1e-3` (no dot) as a string
            try:
                return float(value)
            except ValueError:
                raise _Mismatch from None
        raise _Mismatch
    if tp is str:
        if isinstance(value, str):
            return value
        raise _Mismatch
    return value  # a type this builder does not check (the dataclass validates it)


def build(
    cls: type, data: Any, error: type[Exception] = ValueError, where: str = "", path: str = ""
) -> Any:
    """Dict -> dataclass `cls`, recursively; unknown keys, missing required keys and values of the
    wrong type raise `error` naming their dotted path (prefixed by `where`, e.g. the file)."""
    section = path or "top level"
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise _fail(error, where, f"{section}: expected a mapping, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        key = f"{path}.{unknown[0]}" if path else unknown[0]
        raise _fail(
            error, where, f"unknown config key {key!r} ({section} accepts: {', '.join(fields)})"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in data.items():
        key = f"{path}.{name}" if path else name
        kwargs[name] = check_value(value, hints[name], key, error, where)
    missing = [
        n
        for n, f in fields.items()
        if n not in kwargs
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        key = f"{path}.{missing[0]}" if path else missing[0]
        raise _fail(error, where, f"missing required key {key!r}")
    return cls(**kwargs)


def read_yaml(path: str | Path, error: type[Exception] = ValueError, what: str = "config") -> Any:
    """A YAML file's contents (`{}` when empty); a missing file or bad syntax raises `error`
    naming the file and, for syntax errors, the line and column."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise error(f"{what} file {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise error(f"{what} file {str(path)!r} is not valid YAML{at}: {problem}") from None
    return {} if data is None else data
