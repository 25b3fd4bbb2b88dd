"""Schema selectors: which files a schema applies to.

Grammar (the ESS ingestor's): ``'*'`` matches every file; ``filename:FUNCTION:ARGUMENT``
with function ``starts_with`` or ``contains`` tests the file's full path; a mapping
``{or: [...]}`` / ``{and: [...]}`` nests them. Upstream logs a warning for anything else and
never matches; we refuse it when the schema is loaded.
"""

from __future__ import annotations

from typing import Any

__all__ = ["check_selector", "matches"]

_TARGETS = ("filename",)
_FUNCTIONS = {
    "starts_with": str.startswith,
    "contains": str.__contains__,
}


def check_selector(selector: Any) -> None:
    """Raise ValueError naming the first unknown part of a selector."""
    if isinstance(selector, str):
        if selector == "*":
            return
        parts = selector.split(":", 2)
        if len(parts) != 3:
            raise ValueError(f"selector {selector!r} is not TARGET:FUNCTION:ARGUMENT or '*'")
        target, function, _ = parts
        if target not in _TARGETS:
            raise ValueError(f"selector {selector!r}: unknown target {target!r} (use filename)")
        if function not in _FUNCTIONS:
            raise ValueError(
                f"selector {selector!r}: unknown function {function!r} (use {', '.join(_FUNCTIONS)})"
            )
    elif isinstance(selector, dict):
        if not selector:
            raise ValueError("selector mapping is empty")
        for key, items in selector.items():
            if key not in ("or", "and"):
                raise ValueError(f"selector key {key!r} is unknown (use 'or' or 'and')")
            if not isinstance(items, list) or not items:
                raise ValueError(f"selector '{key}' needs a non-empty list")
            for item in items:
                check_selector(item)
    else:
        raise ValueError(f"selector must be a string or a mapping, got {type(selector).__name__}")


def matches(selector: Any, filename: str) -> bool:
    """Whether ``selector`` (already checked) selects ``filename``; all keys must hold."""
    if isinstance(selector, str):
        if selector == "*":
            return True
        _, function, argument = selector.split(":", 2)
        return _FUNCTIONS[function](filename, argument)
    results = []
    for key, items in selector.items():
        found = (matches(item, filename) for item in items)
        results.append(any(found) if key == "or" else all(found))
    return all(results)
