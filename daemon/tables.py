"""Frozen dataclasses ⇄ TOML tables, validated: the one mechanism behind afx.toml and style specs.

A settings class is a frozen dataclass whose fields carry their limits in `metadata`
(`lo`, `hi`, `choices`, `max_len`). `from_table` builds one from a parsed TOML table and raises the
caller's error class naming the file, the dotted key and the reason; an unknown key is an error that
suggests the nearest valid one. Nothing here knows about specs or the service.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from daemon.errors import AfxError

T = TypeVar("T")


def bounds(*, lo: float | None = None, hi: float | None = None, choices: tuple[Any, ...] | None = None,
           max_len: int | None = None) -> dict[str, Any]:
    """Field metadata: numeric bounds, allowed values, longest string/list."""
    return {"lo": lo, "hi": hi, "choices": choices, "max_len": max_len}


def nearest(key: str, valid: typing.Iterable[str]) -> str | None:
    """The valid key a typo most likely meant, if any is close."""
    found = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.5)
    return found[0] if found else None


def check_keys(table: dict[str, Any], valid: typing.Iterable[str], *, error: type[AfxError],
               path: str | Path | None, prefix: str) -> None:
    """Raise `error` for the first key of `table` that is not in `valid`."""
    valid = list(valid)
    for key in table:
        if key not in valid:
            guess = nearest(key, valid)
            hint = f"did you mean '{_dotted(prefix, guess)}'?" if guess else f"valid keys: {', '.join(valid)}"
            raise error(f"unknown key '{key}'", path=path, key=_dotted(prefix, key), hint=hint)


def from_table(cls: type[T], table: dict[str, Any], *, error: type[AfxError], path: str | Path | None,
               prefix: str = "") -> T:
    """Build the frozen dataclass `cls` from `table`, validating every key and value."""
    if not isinstance(table, dict):
        raise error("expected a table", path=path, key=prefix or None)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]  # (T: a dataclass)
    check_keys(table, fields, error=error, path=path, prefix=prefix)
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for name, raw in table.items():
        key = _dotted(prefix, name)
        values[name] = _coerce(raw, hints[name], fields[name].metadata, error=error, path=path, key=key)
    try:
        return cls(**values)
    except (TypeError, ValueError) as e:
        raise error(str(e), path=path, key=prefix or None) from e


def to_table(obj: Any) -> Any:
    """A dataclass (or nested value) as plain TOML/JSON-able data: tuples become lists, None is dropped."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_table(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if getattr(obj, f.name) is not None}
    if isinstance(obj, (tuple, list)):
        return [to_table(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_table(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _dotted(prefix: str, key: str | None) -> str:
    return f"{prefix}.{key}" if prefix else str(key)


def _coerce(raw: Any, hint: Any, meta: typing.Mapping[str, Any], *, error: type[AfxError],
            path: str | Path | None, key: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        if raw is None:
            return None
        return _coerce(raw, inner[0], meta, error=error, path=path, key=key)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return from_table(hint, raw, error=error, path=path, prefix=key)
    if origin is tuple:
        if not isinstance(raw, (list, tuple)):
            raise error(f"expected a list, got {type(raw).__name__} {raw!r}", path=path, key=key)
        _check_len(raw, meta, error=error, path=path, key=key)
        item = args[0]
        return tuple(_coerce(v, item, {**meta, "max_len": None}, error=error, path=path, key=f"{key}[{i}]")
                     for i, v in enumerate(raw))
    if hint is Path:
        hint = str
    value = _scalar(raw, hint, error=error, path=path, key=key)
    _check_value(value, meta, error=error, path=path, key=key)
    return Path(value) if hint is Path else value


def _scalar(raw: Any, hint: Any, *, error: type[AfxError], path: str | Path | None, key: str) -> Any:
    if hint is bool:
        if isinstance(raw, bool):
            return raw
    elif hint is int:
        if isinstance(raw, int) and not isinstance(raw, bool):
            return raw
    elif hint is float:
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            return float(raw)
    elif hint is str:
        if isinstance(raw, str):
            return raw
    elif hint is Any:
        return raw
    else:
        return raw
    name = getattr(hint, "__name__", str(hint))
    raise error(f"expected {name}, got {type(raw).__name__} {raw!r}", path=path, key=key)


def _check_len(raw: Any, meta: typing.Mapping[str, Any], *, error: type[AfxError], path: str | Path | None,
               key: str) -> None:
    max_len = meta.get("max_len")
    if max_len is not None and len(raw) > max_len:
        raise error(f"too long: {len(raw)} > {max_len}", path=path, key=key)


def _check_value(value: Any, meta: typing.Mapping[str, Any], *, error: type[AfxError], path: str | Path | None,
                 key: str) -> None:
    lo, hi, choices = meta.get("lo"), meta.get("hi"), meta.get("choices")
    if choices is not None and value not in choices:
        guess = nearest(str(value), [str(c) for c in choices])
        hint = f"did you mean '{guess}'?" if guess else None
        raise error(f"{value!r} is not one of {', '.join(map(str, choices))}", path=path, key=key, hint=hint)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if lo is not None and value < lo:
            raise error(f"{value} is below the minimum {lo}", path=path, key=key)
        if hi is not None and value > hi:
            raise error(f"{value} is above the maximum {hi}", path=path, key=key)
    if isinstance(value, str):
        _check_len(value, meta, error=error, path=path, key=key)
