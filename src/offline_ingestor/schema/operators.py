"""The VALUE-variable operators of the ESS ingestor, one small function each."""

from __future__ import annotations

import ast
import os.path
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import quote_plus

__all__ = ["OPERATORS", "OperatorArgs", "apply_operator", "canonical_operator"]


class OperatorArgs(Protocol):
    """What an operator reads of its variable (``models.ValueVariable`` has these fields).

    A protocol, not the model: models validates operator names against OPERATORS below,
    so this module must not import it.
    """

    @property
    def operator(self) -> str: ...
    @property
    def field(self) -> Any: ...
    @property
    def pattern(self) -> str | None: ...
    @property
    def replacement(self) -> str | None: ...


def _join_with_space(value: Any, _: OperatorArgs) -> str:
    # Upstream joins with ", " despite the name; catalogues already hold that form.
    items = ast.literal_eval(value) if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise ValueError(f"join_with_space needs a list, got {type(items).__name__}")
    return ", ".join(str(item) for item in items)


def _getitem(value: Any, variable: OperatorArgs) -> Any:
    if variable.field is None:
        raise ValueError("getitem needs 'field'")
    try:
        return value[variable.field]
    except (KeyError, IndexError, TypeError):
        kind = type(value).__name__
        size = f" of {len(value)}" if isinstance(value, list | dict) else ""
        raise ValueError(f"getitem: no item {variable.field!r} in {kind}{size}") from None


def _str_replace(value: Any, variable: OperatorArgs) -> str:
    if variable.pattern is None or variable.replacement is None:
        raise ValueError("str-replace needs 'pattern' and 'replacement'")
    return str(value).replace(variable.pattern, variable.replacement)


def _sum(value: Any, _: OperatorArgs) -> float | int:
    items = ast.literal_eval(value) if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise ValueError(f"sum needs a list, got {type(items).__name__}")
    numbers = [item if isinstance(item, int | float) else float(item) for item in items]
    return sum(numbers)


#: Every operator a schema may name, with its function (the one list of them).
_OPERATORS: dict[str, Callable[[Any, OperatorArgs], Any]] = {
    "join_with_space": _join_with_space,
    "filename": lambda value, _: os.path.basename(str(value)),
    "dirname": lambda value, _: os.path.dirname(str(value)),
    "dirname-2": lambda value, _: os.path.dirname(os.path.dirname(str(value))),
    "getitem": _getitem,
    "str-replace": _str_replace,
    "urlsafe": lambda value, _: quote_plus(str(value)),
    "to-lower": lambda value, _: str(value).lower(),
    "to-upper": lambda value, _: str(value).upper(),
    "sum": _sum,
}


OPERATORS = tuple(_OPERATORS)


def canonical_operator(name: str) -> str:
    """Operators are spelled with ``-`` or ``_`` upstream; we accept both."""
    dashed = name.replace("_", "-")
    return "join_with_space" if dashed == "join-with-space" else dashed


def apply_operator(value: Any, variable: OperatorArgs) -> Any:
    """Apply the variable's operator (already validated when the schema loaded)."""
    if not variable.operator:
        return value
    return _OPERATORS[variable.operator](value, variable)
