"""Render a schema's ``schema`` section into a dataset document.

``high_level`` items become top-level dataset fields; ``scientific_metadata`` items become
``scientificMetadata[machine_name] = {value, type, human_name, unit}`` as upstream does.
"""

from __future__ import annotations

from typing import Any

from ..errors import SchemaError, VariableError
from .models import Schema
from .templates import Resolved, UnresolvedVariable, render
from .value_types import convert

__all__ = ["render_schema"]


def _render_item(
    schema: Schema, key: str, template: Any, type_: str, registry: dict[str, Resolved]
) -> Resolved:
    try:
        rendered = render(template, registry)
        return Resolved(convert(rendered.value, type_), rendered.unit)
    except UnresolvedVariable as exc:
        raise SchemaError(
            f"schema {schema.id}: item {key} uses <{exc.args[0]}>, which is not a variable"
        ) from None
    except ValueError as exc:
        raise VariableError(f"schema {schema.id}: item {key}: {exc}") from None


def render_schema(schema: Schema, registry: dict[str, Resolved]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return (high-level fields, scientific metadata) for one file's variables."""
    high_level: dict[str, Any] = {}
    scientific: dict[str, Any] = {}
    for key, item in schema.schema_.items():
        resolved = _render_item(schema, key, item.value, item.type, registry)
        if item.field_type == "high_level":
            high_level[item.machine_name] = resolved.value
        else:
            scientific[item.machine_name] = {
                "value": resolved.value,
                "type": item.type,
                "human_name": item.human_name or item.machine_name,
                "unit": item.unit or resolved.unit,
            }
    return high_level, scientific
