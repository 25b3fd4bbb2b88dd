"""Convert a rendered value to a schema ``value_type``/``type``, as the ESS ingestor does.

Differences from upstream, on purpose: ``email`` is checked (SciCat rejects a bad one with a
400 after the dataset is half-built), and a conversion failure is an error naming the
variable, not a warning followed by a silently missing field.
"""

from __future__ import annotations

import ast
import datetime as dt
import re
from collections.abc import Callable
from typing import Any

__all__ = ["VALUE_TYPES", "convert"]

# validator.js isEmail is stricter in corners; this catches what a schema gets wrong
# in practice (empty, missing @, a name instead of an address).
_EMAIL = re.compile(r"^[^@\s;]+@[^@\s;]+\.[^@\s;]+$")


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, list | tuple):
        return list(value)
    if isinstance(value, str):
        try:
            parsed = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return [value]
        return list(parsed) if isinstance(parsed, list | tuple) else [value]
    return [value]


def _to_date(value: Any) -> str:
    if isinstance(value, bool):
        raise ValueError(f"not a date: {value!r}")
    if isinstance(value, int | float):
        return dt.datetime.fromtimestamp(value, tz=dt.UTC).isoformat()
    if isinstance(value, str):
        return dt.datetime.fromisoformat(value).isoformat()
    raise ValueError(f"not a date: {value!r}")


def _to_dict(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        parsed = ast.literal_eval(value)
        if isinstance(parsed, dict):
            return parsed
    raise ValueError(f"not a mapping: {value!r:.80}")


def _to_list(value: Any) -> list[Any]:
    if isinstance(value, list):
        return value
    if isinstance(value, str):
        parsed = ast.literal_eval(value)
        if isinstance(parsed, list):
            return parsed
    raise ValueError(f"not a list: {value!r:.80}")


def _to_email(value: Any) -> str:
    text = str(value).strip()
    parts = [part.strip() for part in text.split(";")]
    if not text or not all(_EMAIL.match(part) for part in parts):
        raise ValueError(f"not an email address: {text!r}")
    return text


def _to_none(value: Any) -> None:
    if value is not None:
        raise ValueError(f"type none needs a null value, got {value!r:.80}")
    return None


def _to_int(value: Any) -> int:
    if isinstance(value, float) and not value.is_integer():
        raise ValueError(f"not an integer: {value!r}")
    return int(value)


#: Every value type a schema may name, with its converter (the one list of them).
_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "string": str,
    "string[]": lambda value: [str(item) for item in _as_list(value)],
    "integer": _to_int,
    "integer[]": lambda value: [_to_int(item) for item in _as_list(value)],
    "float": float,
    "float[]": lambda value: [float(item) for item in _as_list(value)],
    "date": _to_date,
    "dict": _to_dict,
    "list": _to_list,
    "email": _to_email,
    "link": str,
    "none": _to_none,
}


VALUE_TYPES = tuple(_CONVERTERS)


def convert(value: Any, value_type: str) -> Any:
    """Convert ``value``; ValueError says what was wrong with it."""
    try:
        converter = _CONVERTERS[value_type]
    except KeyError:
        raise ValueError(f"unknown value type {value_type!r}") from None
    try:
        return converter(value)
    except (TypeError, ValueError, SyntaxError) as exc:
        raise ValueError(f"cannot convert {value!r:.80} to {value_type}: {exc}") from None
