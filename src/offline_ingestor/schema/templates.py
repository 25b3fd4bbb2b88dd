"""``<name>`` templates in schema values, rendered against the variables computed so far."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

__all__ = ["MAX_RENDERED_CHARS", "Resolved", "TemplateTooLarge", "UnresolvedVariable", "references", "render"]

#: A rendered string longer than this is refused: templates that feed each other can grow
#: exponentially (16x per level ends in a MemoryError), and SciCat's body limit is 16 MB.
MAX_RENDERED_CHARS = 1_000_000

_REFERENCE = re.compile(r"<([A-Za-z_][A-Za-z0-9_.\-]*)>")


@dataclass(frozen=True)
class Resolved:
    """A variable's value and unit (the unit travels only through a bare ``<name>``)."""

    value: Any
    unit: str = ""


class TemplateTooLarge(ValueError):
    """A template rendered to more than :data:`MAX_RENDERED_CHARS` characters."""


class UnresolvedVariable(KeyError):
    """A template names a variable that is not (yet) defined."""


def references(template: Any) -> set[str]:
    """Every ``<name>`` a template (string, list or mapping) refers to."""
    if isinstance(template, str):
        return set(_REFERENCE.findall(template))
    if isinstance(template, list):
        return set().union(*(references(item) for item in template)) if template else set()
    if isinstance(template, dict):
        return references(list(template.values()))
    return set()


def _render_string(template: str, registry: dict[str, Resolved]) -> Resolved:
    whole = _REFERENCE.fullmatch(template)
    if whole:
        try:
            return registry[whole.group(1)]
        except KeyError:
            raise UnresolvedVariable(whole.group(1)) from None

    def substitute(match: re.Match[str]) -> str:
        try:
            return str(registry[match.group(1)].value)
        except KeyError:
            raise UnresolvedVariable(match.group(1)) from None

    rendered = _REFERENCE.sub(substitute, template)
    if len(rendered) > MAX_RENDERED_CHARS:
        raise TemplateTooLarge(f"template output of {len(rendered)} characters exceeds {MAX_RENDERED_CHARS}")
    return Resolved(rendered)


def render(template: Any, registry: dict[str, Resolved]) -> Resolved:
    """Render a template.

    A string that is exactly ``<name>`` yields that variable's value unchanged (keeping its
    type and unit); other strings get every ``<name>`` replaced by ``str(value)``; lists
    and mappings are rendered item by item; anything else is returned as is.
    """
    if isinstance(template, str):
        return _render_string(template, registry)
    if isinstance(template, list):
        return Resolved([render(item, registry).value for item in template])
    if isinstance(template, dict):
        return Resolved({key: render(item, registry).value for key, item in template.items()})
    return Resolved(template)
